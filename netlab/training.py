"""The training loop: a model, its optimizer and its data, stepped, evaluated and checkpointed.

:class:`Trainer` is what ``python -m netlab.train`` runs (and ``netlab.bench``'s e2e mode).
Every ``train.eval_every`` steps and at each epoch's end the train/val/test loss and accuracy
are logged and appended to ``metrics.csv``; ``checkpoints/last.npz`` is written every
``train.checkpoint_every`` steps and ``checkpoints/best.npz`` whenever validation accuracy
improves. A run resumed from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import OmegaConf

from . import backend, checkpoint, data, loggers, losses, metrics, models, nn, optim, plots
from .config import Config
from .errors import CheckpointError, DataError, DivergedError, Interrupted, NetlabError
from .outputs import RunFolder, write_json

log = logging.getLogger("netlab.train")


@dataclass
class Counters:
    """Where the loop is; saved in every checkpoint (checkpoint.COUNTERS)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0             # batches done in this epoch
    best_step: int = 0
    evals_since_best: int = 0
    images: int = 0


# What may differ between a run and the run it resumes: where and how it computes and reports,
# never what it computes. Everything else (seed, data, model, optimizer, batch size, length) is pinned.
RESUME_MAY_CHANGE = ("backend", "debug", "data.root", "data.download", "data.verify", "train.eval_every",
                     "train.eval_batch_size", "train.checkpoint_every", "train.resume", "train.init_from",
                     "train.patience", "train.progress", "logger")


LENGTH_FREE_SCHEDULES = ("constant", "step")  # their lr does not depend on the run's length


def pinned_changes(saved: Config, current: Config) -> list[str]:
    """``key: saved -> current`` for each pinned setting that differs."""
    def flat(cfg):
        return {k: v for k, v in _flatten(OmegaConf.to_container(OmegaConf.structured(cfg))).items()
                if not k.startswith(RESUME_MAY_CHANGE)}

    before, after = flat(saved), flat(current)
    if saved.optimizer.schedule.name in LENGTH_FREE_SCHEDULES:  # extending such a run is meaningful
        for key in ("train.epochs", "train.max_steps"):
            before.pop(key), after.pop(key)
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)]


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Trainer:
    """One training run: data, model and optimizer from ``cfg``; outputs into ``out``."""

    def __init__(self, cfg: Config, out: Path):
        self.cfg, self.out = cfg, Path(out)
        self.xp = xp = backend.namespace(cfg.backend.name)
        if cfg.backend.threads:
            backend.set_threads(cfg.backend.threads)
        self.device = backend.device_name(xp)
        nn.manual_seed(cfg.seed)
        self.model = models.build(cfg.model, cfg.backend.conv).to(xp)  # before the data: a bad model file fails fast
        if cfg.train.init_from:
            self._init_from(cfg.train.init_from)
        dc = cfg.data
        self.splits = data.load(xp, dc.name, dc.root, val_fraction=dc.val_fraction, seed=cfg.seed,
                                download=dc.download, verify=dc.verify, limit=dc.limit)
        self.mean, self.std = (self.splits.mean, self.splits.std) if dc.normalize else (0.0, 1.0)
        self._check_data_fits_model()
        root = backend.Generator(cfg.seed)
        self.rngs = {"dropout": root.spawn(2), "augment": root.spawn(3)}
        self.model.set_rng(self.rngs["dropout"])
        self.loader = self._loader()
        self.steps_per_epoch = len(self.loader)
        total = cfg.train.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
        self.opt = optim.build(cfg.optimizer, self.model, self.total_steps)
        self.at = Counters()
        self.best_val, self.train_time, self.elapsed_before = -1.0, 0.0, 0.0
        self.running = metrics.Running(xp)
        self.log = metrics.MetricsLog()
        self.loggers = loggers.build(cfg.logger, self.out)
        self._started = None
        self.resumed_from = None
        self.interrupt = DeferredInterrupt()  # replaced by an active one while the loop runs

    def _init_from(self, path) -> None:
        """Start from outside weights (fine-tuning): the weights only, with resume's shape checks;
        the optimizer, counters and random streams start afresh."""
        weights, _ = checkpoint.load_weights(path, "best")
        try:
            self.model.load_state_dict(weights)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"train.init_from={path}: the weights do not fit model {self.cfg.model.name!r} "
                                  f"({exc}); choose the model file they were trained with") from None
        self.model.to(self.xp)
        log.info("starting from the weights in %s", path)

    def _check_data_fits_model(self) -> None:
        """What the first evaluation would find out after all the training before it: checked now."""
        s, want = self.splits, tuple(self.cfg.model.input_shape)
        for split, x in (("training", s.train_x), ("validation", s.val_x), ("test", s.test_x)):
            if x.shape[0] == 0:
                raise DataError(f"{self.cfg.data.name}: the {split} split is empty")
            if tuple(x.shape[1:]) != want:
                raise DataError(f"{self.cfg.data.name}: {split} images are {tuple(x.shape[1:])} but the model "
                                f"takes {want} (model.input_shape)")

    def _loader(self) -> data.Loader:
        cfg, xp = self.cfg, self.xp
        x, y, transform, ac = self.splits.train_x, self.splits.train_y, None, cfg.data.augment
        if ac.enabled:
            augment, rng = ac.transform(), self.rngs["augment"]
            if ac.mode == "offline":
                x, y = data.augment_offline(xp, x, y, augment, ac.copies, rng)
            else:
                def transform(xb):
                    return augment(xp, xb, rng)
        return data.Loader(xp, x, y, cfg.train.batch_size, shuffle=cfg.data.shuffle, seed=cfg.seed,
                           mean=self.mean, std=self.std, transform=transform)

    # ----------------------------------------------------------------------------- checkpoints
    def state(self) -> checkpoint.Checkpoint:
        return checkpoint.Checkpoint(
            model=self.model.state_dict(), optimizer=self.opt.state_dict(),
            rngs={name: rng.state_dict() for name, rng in self.rngs.items()},
            counters=asdict(self.at), running=self.running.state_dict(), metrics=self.log.columns(),
            best_val=self.best_val, train_time_s=self.train_time, elapsed_s=self.elapsed(),
            mean=self.mean, std=self.std, config=OmegaConf.to_yaml(OmegaConf.structured(self.cfg)))

    def load(self, path) -> None:
        """Continue from the checkpoint at ``path`` (a run directory or a .npz file)."""
        path = checkpoint.resolve(path)
        ck = checkpoint.read(path)
        changed = pinned_changes(checkpoint.run_config(ck, str(path)), self.cfg)
        if changed:
            raise CheckpointError(f"cannot resume from {path}: this run's settings differ from the run that wrote "
                                  f"it ({'; '.join(changed)}). A resumed run must keep the seed, data, model, "
                                  f"optimizer, batch size and length, or its results would mean nothing; "
                                  f"resume with the same settings, or start a new run")
        self.resumed_from = path
        try:
            self.model.load_state_dict(ck.model)
            self.opt.load_state_dict(ck.optimizer)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {path}: it was saved from a different model ({exc}); "
                                  f"use the same model settings as the run that wrote it") from None
        for name, rng in self.rngs.items():
            rng.load_state_dict(ck.rngs[name])
        self.at = Counters(**ck.counters)
        self.running.load_state_dict(ck.running)
        self.best_val, self.train_time, self.elapsed_before = ck.best_val, ck.train_time_s, ck.elapsed_s
        self.log = metrics.MetricsLog.from_columns(ck.metrics)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.at.step, self.at.epoch, self.at.batch)

    def save(self, name: str) -> Path:
        return checkpoint.write(self.out / "checkpoints" / f"{name}.npz", self.state())

    def elapsed(self) -> float:
        """Wall time of the run so far, across resumes."""
        return self.elapsed_before + (time.perf_counter() - self._started if self._started else 0.0)

    # ---------------------------------------------------------------------------------- the loop
    def fit(self) -> dict:
        """Train to the end (or early stop) and return the results (also in ``results.json``)."""
        with RunFolder(self.out, continuing=self.resumed_from):
            return self._fit()

    def _fit(self) -> dict:
        cfg = self.cfg
        self._started = time.perf_counter()
        failed = True
        try:
            for logger in self.loggers:
                logger.start(loggers.flatten(cfg), self.log.rows)
            results = self._train()
            failed = False
            return results
        finally:
            for logger in self.loggers:
                logger.close(failed)

    def _train(self) -> dict:
        cfg = self.cfg
        log.info("%s on %s (%s), %s parameters; %d steps of batch %d (%d per epoch); %s: %s", cfg.model.name,
                 cfg.backend.name, self.device, f"{self.model.num_parameters():,}", self.total_steps,
                 cfg.train.batch_size, self.steps_per_epoch, cfg.optimizer.name,
                 self.opt.schedule.describe(self.opt.base_lr))
        bar = Progress(cfg.train.progress, self.total_steps, self.at.step)
        self.model.train()
        try:
            with warnings.catch_warnings(), DeferredInterrupt() as self.interrupt:
                # Overflow shows up as a NaN loss, which _diverged() explains; the libraries'
                # own warnings about it would only clutter that message.
                warnings.filterwarnings("ignore", message=r"(invalid value|overflow|divide by zero) encountered")
                self._loop(bar)
        except KeyboardInterrupt:
            raise Interrupted(self._where_stopped()) from None
        finally:
            bar.close()
        return self.finish()

    def _where_stopped(self) -> str:
        kept = self.out / "checkpoints" / "last.npz"
        if not kept.exists():
            return f"interrupted at step {self.at.step}, before the first checkpoint; nothing to resume from"
        step = checkpoint.read(kept).counters["step"]
        return (f"interrupted at step {self.at.step} of {self.total_steps}; the last checkpoint is from step "
                f"{step}: continue with train.resume={self.out}")

    def _loop(self, bar) -> None:
        tc, at, model, opt = self.cfg.train, self.at, self.model, self.opt
        stop = at.step >= self.total_steps
        while not stop:
            if at.batch >= self.steps_per_epoch:
                at.epoch, at.batch = at.epoch + 1, 0
            tick = time.perf_counter()
            for xb, yb in self.loader.batches(at.epoch, start=at.batch):
                self.interrupt.check()  # a Ctrl-C takes effect here, between steps
                logits = model.forward(xb)
                loss, dlogits = losses.softmax_cross_entropy(logits, yb)
                model.backward(dlogits, input_grad=False)
                opt.step()
                self.running.add(loss, logits, yb)
                at.step, at.batch, at.images = at.step + 1, at.batch + 1, at.images + yb.shape[0]
                bar.step(at.step, self.running)
                last = at.step >= self.total_steps
                evaluate = at.step % tc.eval_every == 0 or at.batch == self.steps_per_epoch or last
                save = at.step % tc.checkpoint_every == 0 or last
                if evaluate or save:  # neither counts as training time
                    backend.synchronize(self.xp)
                    self.train_time += time.perf_counter() - tick
                    if evaluate:
                        stop = self.evaluate(bar) or last
                    if save:
                        self._check_finite(self.running.total_loss())
                        self._check_state_finite()
                        self.save("last")
                    tick = time.perf_counter()
                if stop:
                    break

    def _check_finite(self, value: float | None, what: str = "the training loss") -> None:
        if value is not None and not math.isfinite(value):
            self._diverged(f"{what} became {value}")

    def _check_state_finite(self) -> None:
        """Weights and optimizer state must be finite before they are saved: a loss computed
        before the last update cannot vouch for the weights after it."""
        xp = self.xp
        arrays = {**self.model.params, **{f"optimizer {k}.{n}": a for k, bufs in self.opt.state.items()
                                          for n, a in bufs.items()}}
        for name, a in arrays.items():
            if not bool(backend.to_numpy(xp.all(xp.isfinite(a)))):
                self._diverged(f"{name} holds non-finite values")

    def _diverged(self, what: str):
        good = self._good_checkpoint()
        where = (f"The last good checkpoint is {good} (step {checkpoint.read(good).counters['step']}); resume "
                 f"from it with train.resume={good} and a lower lr." if good else
                 "No checkpoint with usable weights had been written yet.")
        raise DivergedError(f"training diverged: {what} by step {self.at.step} (epoch "
                            f"{self.at.step / self.steps_per_epoch:.2f}, lr {self.opt.lr:.3g}). Lower "
                            f"optimizer.lr (for example to {self.cfg.optimizer.lr / 10:g}) or add a "
                            f"schedule with warm-up. {where}")

    def _good_checkpoint(self) -> Path | None:
        """The newest saved checkpoint whose weights give a finite loss on validation images."""
        for name in ("last", "best"):
            path = self.out / "checkpoints" / f"{name}.npz"
            if not path.exists():
                continue
            model = models.build(self.cfg.model, self.cfg.backend.conv)
            model.load_state_dict(checkpoint.read(path).model)
            model.to(self.xp)
            n = min(256, self.splits.val_x.shape[0])
            ev = metrics.evaluate(model, self.splits.val_x[:n, ...], self.splits.val_y[:n], n, self.mean, self.std)
            if math.isfinite(ev.loss):
                return path
        return None

    def evaluate(self, bar) -> bool:
        """Log train/val/test metrics at this step; returns True when early stopping says stop."""
        s, tc, at = self.splits, self.cfg.train, self.at
        train = self.running.result()
        self._check_finite(train.loss)
        self.running.reset()
        results = {"train": train}
        for split, x, y in (("val", s.val_x, s.val_y), ("test", s.test_x, s.test_y)):
            results[split] = metrics.evaluate(self.model, x, y, tc.eval_batch_size, self.mean, self.std)
            self._check_finite(results[split].loss, f"the {split} loss")
        epoch, lr = at.step / self.steps_per_epoch, self.opt.lr
        rows = self.log.add(at.step, epoch, results, lr, self.elapsed())
        for logger in self.loggers:
            logger.log(rows)
        reg = float(backend.to_numpy(losses.l2_penalty(self.model, self.cfg.optimizer.weight_decay)))
        ips = at.images / self.train_time if self.train_time else 0.0
        line = (f"step {at.step:6d} epoch {epoch:5.2f} | " + " | ".join(
            f"{k} loss {results[k].loss:.4f} acc {100 * results[k].accuracy:6.2f}%" for k in metrics.SPLITS)
            + f" | reg loss {reg:.4f} | lr {lr:.2e} | {ips:,.0f} img/s")
        bar.evaluated(train.loss, results["val"].accuracy)
        log.info(line)
        if results["val"].accuracy > self.best_val:
            self.best_val, at.best_step, at.evals_since_best = results["val"].accuracy, at.step, 0
            self.save("best")
        else:
            at.evals_since_best += 1
        if tc.patience and at.evals_since_best >= tc.patience:
            log.info("early stopping: no better validation accuracy in %d evaluations (best %.2f%% at step %d)",
                     tc.patience, 100 * self.best_val, at.best_step)
            return True
        return False

    def finish(self) -> dict:
        cfg, at = self.cfg, self.at
        last = self.log.at(at.step)
        if not last:
            raise NetlabError(f"nothing to train: the run already reached step {at.step}")
        results = {
            **{f"{split}_{k}": last[split][k] for split in ("test", "val", "train") for k in ("accuracy", "loss")},
            "best_val_accuracy": self.best_val, "best_step": at.best_step,
            "train_time_s": round(self.train_time, 3), "elapsed_s": round(self.elapsed(), 3),
            "images_per_s": round(at.images / self.train_time, 1) if self.train_time else None,
            "backend": cfg.backend.name, "device": self.device, "model": cfg.model.name,
            "parameters": self.model.num_parameters(), "optimizer": cfg.optimizer.name,
            "lr": cfg.optimizer.lr, "lr_schedule": self.opt.schedule.describe(self.opt.base_lr),
            "reported_step": at.step,  # the test/val/train figures above are from this step
            "test_accuracy_at_best_step": self.log.at(at.best_step).get("test", {}).get("accuracy"),
            "epochs": round(at.step / self.steps_per_epoch, 4), "steps": at.step, "images": at.images,
            "batch_size": cfg.train.batch_size, "seed": cfg.seed, "dataset": cfg.data.name,
        }
        write_json(self.out / "results.json", results)
        plots.curves(self.log.rows, self.out / "curves.png",
                     f"{cfg.model.name} on {cfg.data.name}: test accuracy {100 * results['test_accuracy']:.2f}%")
        for logger in self.loggers:
            logger.finish(results, [self.out / "curves.png", self.out / "results.json",
                                    self.out / "checkpoints" / "best.npz"])
        log.info("done: test accuracy %.2f%%, val accuracy %.2f%%, %.1f s of training (%s img/s); outputs in %s",
                 100 * results["test_accuracy"], 100 * results["val_accuracy"], self.train_time,
                 f"{results['images_per_s']:,.0f}" if results["images_per_s"] else "-", self.out)
        return results


class DeferredInterrupt:
    """Ctrl-C during the loop takes effect between steps, never inside a checkpoint write or an
    evaluation: the first SIGINT is remembered and raised as KeyboardInterrupt at the next
    :meth:`check`; a second one interrupts at once. (A SIGINT landing inside OmegaConf while a
    checkpoint was being assembled turned into an AttributeError crash, exit 1.) Off the main
    thread, or where SIGINT has a handler other than Python's default, nothing changes."""

    def __init__(self):
        self.pending = False
        self._previous = None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.pending:  # asked twice: stop now
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Progress:
    """What a person at a terminal sees of the loop: a tqdm bar whose postfix shows the running
    training loss, refreshed every ``every`` steps (one host sync per refresh, none per step),
    and the log lines printed above the bar, once each, through tqdm's logging redirection.
    Off a terminal (or with ``train.progress=false``) there is no bar and no extra sync."""

    def __init__(self, enabled: bool, total: int, initial: int, every: int = 20):
        self.every, self.bar, self._redirect = every, None, None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # A terminal that reports a size of 0 (some pseudo-terminals) would get an invisible bar.
            size = os.terminal_size((0, 0))
            with contextlib.suppress(OSError):
                size = os.get_terminal_size(sys.stderr.fileno())
            known = size.columns > 0 and size.lines > 0
            fallback = shutil.get_terminal_size()
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=known,
                            ncols=None if known else fallback.columns, nrows=None if known else fallback.lines)
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        self.val = ""

    def step(self, step: int, running: metrics.Running) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if step % self.every == 0 and running.count:
            self._show(running.total_loss() / running.count)

    def evaluated(self, train_loss: float, val_accuracy: float) -> None:
        if self.bar is not None:
            self.val = f" val {100 * val_accuracy:.2f}%"
            self._show(train_loss)

    def _show(self, loss: float) -> None:
        self.bar.set_postfix_str(f"loss {loss:.4f}{self.val}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self._redirect.__exit__(None, None, None)
            self.bar = None
