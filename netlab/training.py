"""The training loop: a model, its optimizer and its data, stepped, evaluated and checkpointed.

:class:`Trainer` sets a run up from its config and :meth:`Trainer.fit` runs it. Every
``train.eval_every`` steps and at each epoch's end the train/val/test loss and accuracy are
measured; ``checkpoints/last.npz`` is written every ``train.checkpoint_every`` steps. What
happens around that (the best checkpoint, early stopping, the divergence guard, loggers, the
progress bar and log lines) are callbacks (``netlab.callbacks``); continuing a run is
``netlab.resume``'s. A run resumed from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import backend, callbacks as cb, checkpoint, data, loggers, losses, metrics, models, nn, optim, plots, resume
from .config import Config
from .console import DeferredInterrupt, Stop
from .errors import DataError, Interrupted, NetlabError, OutputError
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


def default_callbacks(cfg: Config, out: Path) -> list[cb.Callback]:
    """The callbacks of a run from the command line: the divergence guard first (nothing is
    saved or logged past a NaN), then the best checkpoint, early stopping, the loggers that
    ``cfg.logger`` names, the progress bar and the log lines."""
    return [cb.DivergenceGuard(), cb.BestCheckpoint(), cb.EarlyStopping(cfg.train.patience),
            *loggers.build(cfg.logger, out), cb.ProgressBar(cfg.train.progress), cb.ConsoleLog()]


class Trainer:
    """One training run: data, model and optimizer from ``cfg``; outputs into ``out``;
    ``callbacks`` (default: :func:`default_callbacks`) around the loop."""

    def __init__(self, cfg: Config, out: Path, callbacks: list | None = None):
        self.cfg, self.out = cfg, Path(out)
        self.xp = xp = backend.namespace(cfg.backend.name)
        if cfg.backend.threads:
            backend.set_threads(cfg.backend.threads)
        self.device = backend.device_name(xp)
        nn.manual_seed(cfg.seed)
        self.model = models.build(cfg.model, cfg.backend.conv).to(xp)  # before the data: a bad model file fails fast
        if cfg.train.init_from:
            resume.start_from(self.model, cfg.model.name, cfg.train.init_from)
            self.model.to(xp)
        dc = cfg.data
        self.splits = data.load(xp, dc.name, dc.root, val_fraction=dc.val_fraction, seed=cfg.seed,
                                download=dc.download, verify=dc.verify, limit=dc.limit,
                                input_shape=cfg.model.input_shape, test_fraction=dc.test_fraction,
                                classes=dc.classes, num_classes=cfg.model.num_classes)
        if not data.DATASETS[dc.name].classes:  # a folder's classes are its subfolders: recorded with the run
            dc.classes = list(self.splits.classes)
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
        self.eval_time = 0.0  # seconds of evaluation passes in this process (not kept across a resume; the bench's)
        self.improved, self.stopping = False, None
        self.running = metrics.Running(xp)
        self.log = metrics.MetricsLog()
        self.callbacks = default_callbacks(cfg, self.out) if callbacks is None else list(callbacks)
        self.resumed_from = None
        self._started = None

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
            augment, rng = data.Augment(ac), self.rngs["augment"]
            if ac.mode == "offline":
                x, y = data.augment_offline(xp, x, y, augment, ac.copies, rng)
            else:
                def transform(xb):
                    return augment(xp, xb, rng)
        return data.Loader(xp, x, y, cfg.train.batch_size, shuffle=cfg.data.shuffle, seed=cfg.seed,
                           mean=self.mean, std=self.std, transform=transform)

    # ---------------------------------------------------------------------------------- the loop
    def fit(self) -> dict:
        """Train to the end (or until a callback stops the run) and return the results (also in
        ``results.json``)."""
        if self.at.step >= self.total_steps:
            raise NetlabError(f"nothing to train: the run already reached step {self.at.step} of "
                              f"{self.total_steps}, its last (it finished)")
        with RunFolder(self.out, continuing=self.resumed_from):
            self._started = time.perf_counter()
            failed = True
            try:
                self._call("on_fit_start")
                self.model.train()
                with warnings.catch_warnings(), DeferredInterrupt() as interrupt:
                    # Overflow shows up as a NaN loss, which the divergence guard explains; the
                    # libraries' own warnings about it would only clutter that message.
                    warnings.filterwarnings("ignore", message=r"(invalid value|overflow|divide by zero) encountered")
                    self._loop(interrupt)
                results = self.finish()
                failed = False
                return results
            except Stop as stop:  # between two steps: the state is whole, and saved before leaving
                if self.at.step > self._saved_step():
                    self.save("last")
                raise Interrupted(self._where_stopped({"SIGINT": "Ctrl-C"}.get(stop.args[0], stop.args[0])),
                                  stop.signum) from None
            except KeyboardInterrupt:  # at once (a second Ctrl-C): the last checkpoint stays the last
                raise Interrupted(self._where_stopped("Ctrl-C")) from None
            except OutputError as exc:  # a full disk: say what can be continued, and how
                kept = resume.checkpoint_of(self.out)
                then = (f"checkpoints/{kept.name} (step {checkpoint.read(kept).counters['step']}) is whole: once "
                        f"there is space, continue with python -m netlab.train train.resume={self.out}" if kept else
                        "no checkpoint had been written yet: once there is space, start the run again")
                raise OutputError(exc.errno, f"cannot write {exc.filename}: {getattr(exc, 'reason', exc)}; "
                                             f"{then}") from None
            finally:
                self._call("on_close", failed)

    def _loop(self, interrupt: DeferredInterrupt) -> None:
        tc, at = self.cfg.train, self.at
        while at.step < self.total_steps and not self.stopping:
            if at.batch >= self.steps_per_epoch:
                at.epoch, at.batch = at.epoch + 1, 0
            tick = time.perf_counter()
            for xb, yb in self.loader.batches(at.epoch, start=at.batch):
                interrupt.check()  # a Ctrl-C takes effect here, between steps
                self.train_step(xb, yb)
                self._call("on_step_end")
                last = at.step >= self.total_steps
                evaluate = at.step % tc.eval_every == 0 or at.batch == self.steps_per_epoch or last
                save = at.step % tc.checkpoint_every == 0 or last
                if evaluate or save:  # neither counts as training time
                    backend.synchronize(self.xp)
                    self.train_time += time.perf_counter() - tick
                    if evaluate:
                        self.evaluate()
                    if save:
                        self.save("last")
                    tick = time.perf_counter()
                if last or self.stopping:
                    break

    def train_step(self, xb, yb) -> None:
        """One optimizer step on a batch; the loss is summed on the device (no host sync)."""
        logits = self.model.forward(xb)
        loss, dlogits = losses.softmax_cross_entropy(logits, yb, self.cfg.train.label_smoothing)
        self.model.backward(dlogits, input_grad=False)
        self.opt.step()
        self.running.add(loss, logits, yb)
        at = self.at
        at.step, at.batch, at.images = at.step + 1, at.batch + 1, at.images + yb.shape[0]

    def evaluate(self) -> list[dict]:
        """Measure train (the running sums)/val/test at this step, note whether validation
        improved, and tell the callbacks; returns the metrics rows."""
        s, at = self.splits, self.at
        results = {"train": self.running.result()}
        self.running.reset()
        tick = time.perf_counter()
        for split, x, y in (("val", s.val_x, s.val_y), ("test", s.test_x, s.test_y)):
            results[split] = metrics.evaluate(self.model, x, y, self.cfg.train.eval_batch_size, self.mean, self.std)
        self.eval_time += time.perf_counter() - tick  # the passes only (they end on the host), not the callbacks
        rows = self.log.add(at.step, at.step / self.steps_per_epoch, results, self.opt.lr, self.elapsed())
        self.improved = results["val"].accuracy > self.best_val
        if self.improved:
            self.best_val, at.best_step, at.evals_since_best = results["val"].accuracy, at.step, 0
        else:
            at.evals_since_best += 1
        self._call("on_evaluate", rows)
        return rows

    def stop(self, reason: str) -> None:
        """End the run after this step (a callback's request, e.g. early stopping)."""
        log.info(reason)
        self.stopping = reason

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _saved_step(self) -> int:
        kept = self.out / "checkpoints" / "last.npz"
        return checkpoint.read(kept).counters["step"] if kept.exists() else -1

    def _where_stopped(self, by: str) -> str:
        step = self._saved_step()
        if step < 0:
            return f"interrupted ({by}) at step {self.at.step}, before the first checkpoint; nothing to resume from"
        return (f"interrupted ({by}) at step {self.at.step} of {self.total_steps}; the last checkpoint is from "
                f"step {step}: continue with python -m netlab.train train.resume={self.out}")

    def elapsed(self) -> float:
        """Wall time of the run so far, across resumes."""
        return self.elapsed_before + (time.perf_counter() - self._started if self._started else 0.0)

    # ----------------------------------------------------------------------------- checkpoints
    def load(self, path) -> None:
        """Continue from the checkpoint at ``path`` (a run directory or a .npz file)."""
        resume.resume(self, path)

    def save(self, name: str) -> Path:
        """``checkpoints/<name>.npz``, once every callback's ``on_checkpoint`` agrees."""
        self._call("on_checkpoint", name)
        return checkpoint.write(self.out / "checkpoints" / f"{name}.npz", resume.snapshot(self))

    # ---------------------------------------------------------------------------------- results
    def finish(self) -> dict:
        """The results of the run (also ``results.json``), with its curves (``curves.png``)."""
        cfg, at = self.cfg, self.at
        last = self.log.at(at.step)
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
        self._call("on_fit_end", results)
        return results

    def artifacts(self) -> list[Path]:
        """The run's files worth keeping beside its metrics (what trackers upload)."""
        return [self.out / "curves.png", self.out / "results.json", self.out / "checkpoints" / "best.npz"]
