"""Callbacks: everything around the training loop that is not the step itself.

:meth:`netlab.training.Trainer.fit` calls these hooks on each callback, in list order:

==================================  ===========================================================
``on_fit_start(trainer)``           before the first step (a resumed run too)
``on_step_end(trainer)``            after every optimizer step; no host sync here, it would
                                    stall the device queue
``on_evaluate(trainer, rows)``      after each evaluation, with its metrics rows (one per
                                    split: step, epoch, split, loss, accuracy, lr, elapsed_s);
                                    ``trainer.improved`` says whether validation accuracy beat
                                    the best so far; ``trainer.stop(reason)`` ends the run there
``on_checkpoint(trainer, name)``    before ``checkpoints/<name>.npz`` is written; raising
                                    refuses the checkpoint (and stops the run)
``on_fit_end(trainer, results)``    after ``results.json`` and ``curves.png`` are written
``on_close(trainer, failed)``       last, always: also after an error or Ctrl-C
==================================  ===========================================================

A callback implements the hooks it needs. The built-in ones: :class:`DivergenceGuard`,
:class:`BestCheckpoint`, :class:`EarlyStopping`, :class:`ProgressBar`, :class:`ConsoleLog`;
the loggers (``netlab.loggers``: metrics.csv, TensorBoard, MLflow) are callbacks too.
:func:`netlab.training.default_callbacks` is the list a run from the command line uses.
"""

from __future__ import annotations

import logging
import math
import shlex
from pathlib import Path

from . import backend, checkpoint, losses, metrics, models
from .console import Progress
from .errors import DivergedError

log = logging.getLogger("netlab.train")


class Callback:
    """The hooks, each doing nothing; see the module's docstring for when each is called."""

    def on_fit_start(self, trainer) -> None:
        pass

    def on_step_end(self, trainer) -> None:
        pass

    def on_evaluate(self, trainer, rows: list[dict]) -> None:
        pass

    def on_checkpoint(self, trainer, name: str) -> None:
        pass

    def on_fit_end(self, trainer, results: dict) -> None:
        pass

    def on_close(self, trainer, failed: bool) -> None:
        pass


class DivergenceGuard(Callback):
    """A NaN or infinite loss stops the run with advice, and no checkpoint ever holds non-finite
    weights or optimizer state: they are checked (one reduction, one host sync) before each
    checkpoint, since a loss computed before the last update cannot vouch for the weights
    after it. The advice names the newest checkpoint whose weights still give a finite loss."""

    def on_evaluate(self, trainer, rows):
        for row in rows:
            what = "the training loss" if row["split"] == "train" else f"the {row['split']} loss"
            self._check(trainer, row["loss"], what)

    def on_checkpoint(self, trainer, name):
        self._check(trainer, trainer.running.total_loss(), "the training loss")
        xp = trainer.xp
        arrays = {**trainer.model.params, **dict(trainer.model.named_buffers()),
                  **{f"optimizer {k}.{n}": a for k, bufs in trainer.opt.state.items() for n, a in bufs.items()}}
        arrays = {k: a for k, a in arrays.items() if xp.isdtype(a.dtype, "real floating")}
        if not all_finite(xp, arrays.values()):
            bad = next(k for k, a in arrays.items() if not all_finite(xp, [a]))
            self._diverged(trainer, f"{bad} holds non-finite values")

    def _check(self, trainer, value, what: str) -> None:
        if value is not None and not math.isfinite(value):
            self._diverged(trainer, f"{what} became {value}")

    def _diverged(self, trainer, what: str):
        good = good_checkpoint(trainer)
        lower = f"optimizer.lr={trainer.cfg.optimizer.lr / 10:g}"
        again = " ".join(["python -m netlab.train", *_given_overrides(), lower])
        where = (f"The last good checkpoint is {good} (step {checkpoint.read(good).counters['step']}); start "
                 f"again from its weights with a lower lr: {again} train.init_from={good}" if good else
                 f"No checkpoint with usable weights had been written yet; start again with a lower lr: {again}")
        raise DivergedError(f"training diverged: {what} by step {trainer.at.step} (epoch "
                            f"{trainer.at.step / trainer.steps_per_epoch:.2f}, lr {trainer.opt.lr:.3g}). Lower "
                            f"optimizer.lr or add a schedule with warm-up. {where}")


def _given_overrides() -> list[str]:
    """The overrides this run was started with (on the command line), less those a new start
    from its weights replaces; none when it was started from Python."""
    try:
        from hydra.core.hydra_config import HydraConfig

        given = list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra app running
        return []
    replaced = ("optimizer.lr", "train.init_from", "train.resume", "hydra.run.dir", "hydra.sweep")
    return [shlex.quote(o) for o in given if not o.lstrip("+~").startswith(replaced)]


def all_finite(xp, arrays) -> bool:
    """Whether every value of every array is finite: one reduction per array, one host sync in all."""
    flags = [xp.all(xp.isfinite(a)) for a in arrays]
    return not flags or bool(backend.to_numpy(xp.all(xp.stack(flags))))


def good_checkpoint(trainer) -> Path | None:
    """The newest saved checkpoint whose weights give a finite loss on validation images."""
    for name in ("last", "best"):
        path = trainer.out / "checkpoints" / f"{name}.npz"
        if not path.exists():
            continue
        model = models.build(trainer.cfg.model, trainer.cfg.backend.conv)
        model.load_state_dict(checkpoint.read(path).model)
        model.to(trainer.xp)
        s = trainer.splits
        n = min(trainer.cfg.train.eval_batch_size, s.val_x.shape[0])
        ev = metrics.evaluate(model, s.val_x[:n, ...], s.val_y[:n], n, trainer.mean, trainer.std)
        if math.isfinite(ev.loss):
            return path
    return None


class BestCheckpoint(Callback):
    """``checkpoints/best.npz`` whenever validation accuracy improves (what ``evaluate`` and
    ``export`` use by default)."""

    def on_evaluate(self, trainer, rows):
        if trainer.improved:
            trainer.save("best")


class EarlyStopping(Callback):
    """Stop after ``patience`` evaluations in a row without a better validation accuracy (0: never)."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_evaluate(self, trainer, rows):
        if self.patience and trainer.at.evals_since_best >= self.patience:
            trainer.stop(f"early stopping: no better validation accuracy in {self.patience} evaluations (best "
                         f"{100 * trainer.best_val:.2f}% at step {trainer.at.best_step})")


class ProgressBar(Callback):
    """The terminal's progress bar (:class:`netlab.console.Progress`), closed before the last lines."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def on_fit_start(self, trainer):
        self.bar = Progress(self.enabled, trainer.total_steps, trainer.at.step)

    def on_step_end(self, trainer):
        self.bar.step(trainer.at.step, trainer.running)

    def on_evaluate(self, trainer, rows):
        by_split = {r["split"]: r for r in rows}
        self.bar.evaluated(by_split["train"]["loss"], by_split["val"]["accuracy"])

    def on_fit_end(self, trainer, results):
        self.on_close(trainer, False)

    def on_close(self, trainer, failed):
        if self.bar is not None:
            self.bar.close()


class ConsoleLog(Callback):
    """The run's log lines: what it trains and its model, then a table row per evaluation (loss
    and accuracy of each split, lr, speed, time left), a line per epoch, and where the outputs
    are. Rows fit 120 columns with the time stamp before them."""

    def on_fit_start(self, trainer):
        cfg = trainer.cfg
        log.info("%s on %s (%s), %s parameters; %d steps of batch %d (%d per epoch)", cfg.model.name,
                 cfg.backend.name, trainer.device, f"{trainer.model.num_parameters():,}", trainer.total_steps,
                 cfg.train.batch_size, trainer.steps_per_epoch)
        log.info("%s, %s", cfg.optimizer.name, trainer.opt.schedule.describe(trainer.opt.base_lr))
        for line in str(models.summary(trainer.model, cfg.model.input_shape)).splitlines():
            log.info("  %s", line)
        self.l2 = cfg.optimizer.weight_decay > 0 and not trainer.opt.DECOUPLED  # AdamW's decay is no loss term
        self.header = ("   step  epoch  " + "  ".join(f"{s + ' loss/acc':<15}" for s in ("train", "val", "test"))
                       + ("  reg loss" if self.l2 else "") + "  lr        img/s     left")
        log.info(self.header)
        self.epoch_started, self.steps_at_start = trainer.elapsed(), trainer.at.step

    def on_evaluate(self, trainer, rows):
        at = trainer.at
        cells = [f"{r['loss']:6.4f} {100 * r['accuracy']:6.2f}%" for r in rows]
        reg = ""
        if self.l2:
            reg = f"  {float(backend.to_numpy(losses.l2_penalty(trainer.model, trainer.cfg.optimizer.weight_decay))):8.4f}"
        ips = at.images / trainer.train_time if trainer.train_time else 0.0
        log.info(f"{at.step:7d} {rows[0]['epoch']:6.2f}  " + "  ".join(cells) + reg +
                 f"  {rows[0]['lr']:.2e}  {ips:7,.0f}  {_duration(self._left(trainer)):>7}")
        if at.batch == trainer.steps_per_epoch:
            took = trainer.elapsed() - self.epoch_started
            log.info("epoch %d of %d done in %s", at.epoch + 1, -(-trainer.total_steps // trainer.steps_per_epoch),
                     _duration(took))
            self.epoch_started = trainer.elapsed()

    def _left(self, trainer) -> float:
        """Seconds left at this run's pace so far (this session's steps, evaluations included)."""
        done = trainer.at.step - self.steps_at_start
        spent = trainer.elapsed() - trainer.elapsed_before
        return spent / done * (trainer.total_steps - trainer.at.step) if done else 0.0

    def on_fit_end(self, trainer, results):
        log.info("done: test accuracy %.2f%%, val accuracy %.2f%%, %s of training (%s img/s); outputs in %s",
                 100 * results["test_accuracy"], 100 * results["val_accuracy"], _duration(trainer.train_time),
                 f"{results['images_per_s']:,.0f}" if results["images_per_s"] else "-", trainer.out)


def _duration(seconds: float) -> str:
    """``42.0 s``, ``3m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
