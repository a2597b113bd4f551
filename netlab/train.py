"""``python -m netlab.train``: train one model (``-m`` sweeps), the report's loop done right.

Every ``train.eval_every`` steps (and at each epoch's end) the train/val/test loss and
accuracy are logged, appended to ``metrics.csv`` and drawn into ``curves.png``;
``checkpoints/last.npz`` is written every ``train.checkpoint_every`` steps and
``checkpoints/best.npz`` whenever validation accuracy improves. A run resumed from a
checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from . import backend, data, losses, models, nn, plots
from .app import make_optimizer, user_errors
from .checkpoint import FORMAT as CHECKPOINT_FORMAT, read_checkpoint
from .config import Config, validate
from .errors import ConfigError, DivergedError, NetlabError

log = logging.getLogger("netlab.train")

SPLITS = ("train", "val", "test")
COLUMNS = ("step", "epoch", "split", "loss", "accuracy", "lr", "elapsed_s")


def evaluate_split(model, x, y, batch_size: int, mean: float, std: float, num_classes: int | None = None):
    """Mean loss and accuracy of ``model`` (eval mode) on ``x, y``; with ``num_classes``, also the
    confusion matrix (true class x predicted class) as a NumPy array."""
    xp = model.xp
    was_training = model.training
    model.eval()
    loss_sum = correct = confusion = None
    n = x.shape[0]
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)  # the standard leaves slices past the end unspecified
        xb = (x[lo:hi, ...] - mean) * (1.0 / std)
        yb = y[lo:hi]
        logits = model.forward(xb)
        loss, _ = losses.softmax_cross_entropy(logits, yb)
        hits = losses.correct(logits, yb)
        part = loss * yb.shape[0]
        loss_sum = part if loss_sum is None else loss_sum + part
        correct = hits if correct is None else correct + hits
        if num_classes:
            pred = xp.argmax(logits, axis=1)
            classes = xp.arange(num_classes, dtype=yb.dtype, device=yb.device)
            true1h = xp.astype(yb[:, None] == classes, xp.float32)
            pred1h = xp.astype(pred[:, None] == xp.astype(classes, pred.dtype), xp.float32)
            block = xp.matrix_transpose(true1h) @ pred1h
            confusion = block if confusion is None else confusion + block
    model.train(was_training)
    result = (float(backend.to_numpy(loss_sum)) / n, float(backend.to_numpy(correct)) / n)
    if num_classes:
        return (*result, backend.to_numpy(confusion).round().astype(int))
    return result


class Run:
    """One training run: its data, model, optimizer, counters and outputs."""

    COUNTERS = ("step", "epoch", "batch", "best_step", "evals_since_best", "images", "run_count")

    def __init__(self, cfg: Config, out_dir: Path, config_yaml: str):
        self.cfg, self.out = cfg, out_dir
        self.config_yaml = config_yaml
        tc = cfg.train
        self.xp = xp = backend.namespace(cfg.backend.name)
        if cfg.backend.threads:
            backend.set_threads(cfg.backend.threads)
        self.device = backend.device_name(xp)
        dc = cfg.data
        self.splits = s = data.load(xp, dc.name, dc.root, val_fraction=dc.val_fraction, seed=cfg.seed,
                                    download=dc.download, verify=dc.verify, limit=dc.limit)
        self.mean, self.std = (s.mean, s.std) if dc.normalize else (0.0, 1.0)
        nn.manual_seed(cfg.seed)
        self.model = models.build(cfg.model).to(xp)
        root_rng = backend.Generator(cfg.seed)
        self.dropout_rng, self.augment_rng = root_rng.spawn(2), root_rng.spawn(3)
        self.model.set_rng(self.dropout_rng)
        train_x, train_y, transform = s.train_x, s.train_y, None
        ac = dc.augment
        if ac.enabled:
            augment = ac.transform()
            if ac.mode == "offline":
                train_x, train_y = data.augment_offline(xp, train_x, train_y, augment, ac.copies, self.augment_rng)
            else:
                def transform(xb):
                    return augment(xp, xb, self.augment_rng)
        self.loader = data.Loader(xp, train_x, train_y, tc.batch_size, shuffle=dc.shuffle, seed=cfg.seed,
                                  mean=self.mean, std=self.std, transform=transform)
        self.steps_per_epoch = len(self.loader)
        total = tc.epochs * self.steps_per_epoch
        self.total_steps = min(total, tc.max_steps) if tc.max_steps else total
        self.opt = make_optimizer(cfg.optimizer, self.model, self.total_steps)
        # counters (all saved in checkpoints)
        self.step = self.epoch = self.batch = 0
        self.best_val, self.best_step, self.evals_since_best = -1.0, 0, 0
        self.elapsed_before = self.train_time = 0.0
        self.images = 0
        self.rows: list[dict] = []
        self._reset_running()

    # -------------------------------------------------------------------------- running sums
    def _reset_running(self):
        self.run_loss = self.run_correct = None
        self.run_count = 0

    def _accumulate(self, loss, logits, yb):
        n = yb.shape[0]
        hits = losses.correct(logits, yb)
        part = self.xp.astype(loss, self.xp.float64) * n
        self.run_loss = part if self.run_loss is None else self.run_loss + part
        self.run_correct = hits if self.run_correct is None else self.run_correct + hits
        self.run_count += n

    # ----------------------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update({f"optim.{k}": v for k, v in self.opt.state_dict().items()})
        for name, rng in self._generators():
            out[f"rng.{name}.seed"], out[f"rng.{name}.counter"] = rng.seed, rng.counter
        for k in self.COUNTERS:
            out[k] = getattr(self, k)
        out.update(best_val=self.best_val, train_time_s=self.train_time, elapsed_s=self.elapsed(),
                   data_mean=self.mean, data_std=self.std, config=self.config_yaml, format=CHECKPOINT_FORMAT)
        out["run_loss"] = 0.0 if self.run_loss is None else self.run_loss
        out["run_correct"] = 0.0 if self.run_correct is None else self.run_correct
        for col in COLUMNS:
            out[f"metrics.{col}"] = [r[col] for r in self.rows]
        return out

    def load(self, path: Path) -> None:
        st = read_checkpoint(path)
        try:
            self.model.load_state_dict({k[6:]: v for k, v in st.items() if k.startswith("model.")})
            self.opt.load_state_dict({k[6:]: v for k, v in st.items() if k.startswith("optim.")})
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"cannot resume from {path}: it was saved from a different model ({exc}); "
                              f"use the same model settings as the run that wrote it") from None
        for name, rng in self._generators():
            rng.load_state_dict({"seed": st[f"rng.{name}.seed"], "counter": st[f"rng.{name}.counter"]})
        for k in self.COUNTERS:
            setattr(self, k, int(st[k]))
        self.best_val, self.train_time = float(st["best_val"]), float(st["train_time_s"])
        self.elapsed_before = float(st["elapsed_s"])
        xp = self.xp
        if self.run_count:
            self.run_loss = backend.from_numpy(xp, st["run_loss"], dtype=xp.float64)
            self.run_correct = backend.from_numpy(xp, st["run_correct"], dtype=xp.float64)
        n = len(st["metrics.step"])
        self.rows = [{c: st[f"metrics.{c}"][i].item() for c in COLUMNS} for i in range(n)]
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch)

    def _generators(self):
        return (("dropout", self.dropout_rng), ("augment", self.augment_rng))

    def save(self, name: str) -> Path:
        path = self.out / "checkpoints" / f"{name}.npz"
        backend.save_arrays(path, self.state())
        return path

    # ------------------------------------------------------------------------------- the loop
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def fit(self) -> dict:
        cfg, model = self.cfg, self.model
        self.t0 = time.perf_counter()
        self.metrics_file = open(self.out / "metrics.csv", "w", newline="")
        self.writer = csv.DictWriter(self.metrics_file, fieldnames=COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(self.rows)
        self.metrics_file.flush()
        log.info("%s on %s (%s), %s parameters; %d steps of batch %d (%d per epoch)", cfg.model.name,
                 cfg.backend.name, self.device, f"{model.num_parameters():,}", self.total_steps,
                 cfg.train.batch_size, self.steps_per_epoch)
        bar = _progress(cfg.train.progress, self.total_steps, self.step)
        model.train()
        try:
            with warnings.catch_warnings():
                # Overflow shows up as a NaN loss, which _diverged() explains; the libraries'
                # own warnings about it would only clutter that message.
                warnings.filterwarnings("ignore", message=r"(invalid value|overflow|divide by zero) encountered")
                self._loop(bar)
        finally:
            bar.close()
            self.metrics_file.close()
        return self.finish()

    def _loop(self, bar) -> None:
        cfg, xp, model, opt = self.cfg, self.xp, self.model, self.opt
        stop = self.step >= self.total_steps
        while not stop:
            if self.batch >= self.steps_per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
            tick = time.perf_counter()
            for xb, yb in self.loader.batches(self.epoch, start=self.batch):
                logits = model.forward(xb)
                loss, dlogits = losses.softmax_cross_entropy(logits, yb)
                model.backward(dlogits, input_grad=False)
                opt.step()
                self._accumulate(loss, logits, yb)
                self.step, self.batch = self.step + 1, self.batch + 1
                self.images += yb.shape[0]
                bar.update(1)
                last = self.step >= self.total_steps
                evaluate = self.step % cfg.train.eval_every == 0 or self.batch == self.steps_per_epoch or last
                checkpoint = self.step % cfg.train.checkpoint_every == 0 or last
                if evaluate or checkpoint:  # neither counts as training time
                    backend.synchronize(xp)
                    self.train_time += time.perf_counter() - tick
                    if evaluate:
                        stop = self.evaluate(bar) or last
                    if checkpoint:
                        self._check_finite()
                        self.save("last")
                    tick = time.perf_counter()
                if stop:
                    break

    def _check_finite(self):
        if self.run_loss is not None:
            value = float(backend.to_numpy(self.run_loss))
            if not math.isfinite(value):
                self._diverged(value)

    def _diverged(self, value):
        kept = self.out / "checkpoints" / "last.npz"
        where = (f"The last good checkpoint is kept at {kept}; resume from it with train.resume={kept} "
                 f"and a lower lr." if kept.exists() else "No checkpoint had been written yet.")
        raise DivergedError(f"training diverged: the training loss became {value} by step {self.step} "
                            f"(epoch {self.step / self.steps_per_epoch:.2f}, lr {self.opt.lr:.3g}). Lower "
                            f"optimizer.lr (for example to {self.cfg.optimizer.lr / 10:g}) or add a "
                            f"schedule with warm-up. {where}")

    def evaluate(self, bar) -> bool:
        """Log train/val/test metrics at this step; returns True when early stopping says stop."""
        s, tc = self.splits, self.cfg.train
        train_loss = float(backend.to_numpy(self.run_loss)) / self.run_count
        train_acc = float(backend.to_numpy(self.run_correct)) / self.run_count
        if not math.isfinite(train_loss):
            self._diverged(train_loss)
        self._reset_running()
        results = {"train": (train_loss, train_acc)}
        for split, x, y in (("val", s.val_x, s.val_y), ("test", s.test_x, s.test_y)):
            results[split] = evaluate_split(self.model, x, y, tc.eval_batch_size, self.mean, self.std)
        epoch = self.step / self.steps_per_epoch
        lr = self.opt.lr
        for split in SPLITS:
            row = dict(step=self.step, epoch=round(epoch, 4), split=split, loss=results[split][0],
                       accuracy=results[split][1], lr=lr, elapsed_s=round(self.elapsed(), 3))
            self.rows.append(row)
            self.writer.writerow(row)
        self.metrics_file.flush()
        reg = float(backend.to_numpy(losses.l2_penalty(self.model, self.cfg.optimizer.weight_decay)))
        ips = self.images / self.train_time if self.train_time else 0.0
        line = (f"step {self.step:6d} epoch {epoch:5.2f} | " + " | ".join(
            f"{k} loss {results[k][0]:.4f} acc {100 * results[k][1]:6.2f}%" for k in SPLITS)
            + f" | reg loss {reg:.4f} | lr {lr:.2e} | {ips:,.0f} img/s")
        bar.set_postfix_str(f"loss {train_loss:.3f} val {100 * results['val'][1]:.2f}%", refresh=False)
        if bar.interactive:
            bar.write(line)
        log.info(line)
        if results["val"][1] > self.best_val:
            self.best_val, self.best_step, self.evals_since_best = results["val"][1], self.step, 0
            self.save("best")
        else:
            self.evals_since_best += 1
        if tc.patience and self.evals_since_best >= tc.patience:
            log.info("early stopping: no better validation accuracy in %d evaluations (best %.2f%% at step %d)",
                     tc.patience, 100 * self.best_val, self.best_step)
            return True
        return False

    def finish(self) -> dict:
        cfg = self.cfg
        last = {r["split"]: r for r in self.rows if r["step"] == self.step}
        if not last:
            raise NetlabError(f"nothing to train: the run already reached step {self.step}")
        results = {
            "test_accuracy": last["test"]["accuracy"], "test_loss": last["test"]["loss"],
            "val_accuracy": last["val"]["accuracy"], "val_loss": last["val"]["loss"],
            "train_accuracy": last["train"]["accuracy"], "train_loss": last["train"]["loss"],
            "best_val_accuracy": self.best_val, "best_step": self.best_step,
            "train_time_s": round(self.train_time, 3), "elapsed_s": round(self.elapsed(), 3),
            "images_per_s": round(self.images / self.train_time, 1) if self.train_time else None,
            "backend": cfg.backend.name, "device": self.device, "model": cfg.model.name,
            "parameters": self.model.num_parameters(), "optimizer": cfg.optimizer.name,
            "epochs": round(self.step / self.steps_per_epoch, 4), "steps": self.step,
            "batch_size": cfg.train.batch_size, "seed": cfg.seed, "dataset": cfg.data.name,
        }
        (self.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        plots.curves(self.rows, self.out / "curves.png",
                     f"{cfg.model.name} on {cfg.data.name}: test accuracy {100 * results['test_accuracy']:.2f}%")
        log.info("done: test accuracy %.2f%%, val accuracy %.2f%%, %.1f s of training (%s img/s); outputs in %s",
                 100 * results["test_accuracy"], 100 * results["val_accuracy"], self.train_time,
                 f"{results['images_per_s']:,.0f}" if results["images_per_s"] else "-", self.out)
        return results


class _Quiet:
    interactive = False

    def update(self, n):
        pass

    def set_postfix_str(self, *a, **k):
        pass

    def close(self):
        pass


def _progress(enabled: bool, total: int, initial: int):
    if not (enabled and sys.stderr.isatty()):
        return _Quiet()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
    bar.interactive = True
    return bar


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def train(cfg: DictConfig, out_dir: Path | None = None) -> float:
    """Hydra task: train, write the outputs into ``out_dir`` (default: Hydra's run directory),
    return the final validation accuracy."""
    checked = validate(cfg)
    run = Run(checked, out_dir or output_dir(), OmegaConf.to_yaml(cfg, resolve=True))
    if checked.train.resume:
        run.load(Path(checked.train.resume))
    return run.fit()["val_accuracy"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return user_errors(train)(cfg)


if __name__ == "__main__":
    main()
