"""Continuing a run: what a checkpoint of a run holds (:func:`snapshot`, :func:`restore`), the
resume policy (what a resumed run may change), and starting from outside weights
(``train.init_from``).

A resumed run continues exactly where its checkpoint stopped (weights, optimizer state,
counters, random streams, running sums and the metrics so far), so it ends bit-identical to an
uninterrupted run on the numpy backend. It may change where and how it computes and reports,
never what it computes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from omegaconf import OmegaConf

from . import checkpoint, metrics
from .config import flatten
from .errors import CheckpointError
from .saved import embedded_config, load_weights

log = logging.getLogger("netlab.train")

# What may differ between a run and the run it resumes: where and how it computes and reports,
# never what it computes. Everything else (seed, data, model, optimizer, batch size, length) is pinned.
RESUME_MAY_CHANGE = ("backend", "debug", "data.root", "data.download", "data.verify", "train.eval_every",
                     "train.eval_batch_size", "train.checkpoint_every", "train.resume", "train.init_from",
                     "train.patience", "train.progress", "logger")

LENGTH_FREE_SCHEDULES = ("constant", "step")  # their lr does not depend on the run's length


def pinned_changes(saved, current) -> list[str]:
    """``key: saved -> current`` for each pinned setting that differs between two configs."""
    def pinned(cfg):
        return {k: v for k, v in flatten(cfg).items() if not k.startswith(RESUME_MAY_CHANGE)}

    before, after = pinned(saved), pinned(current)
    if saved.optimizer.schedule.name in LENGTH_FREE_SCHEDULES:  # extending such a run is meaningful
        for key in ("train.epochs", "train.max_steps"):
            before.pop(key), after.pop(key)
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)]


def snapshot(trainer) -> checkpoint.Checkpoint:
    """Everything ``trainer`` needs to continue exactly where it is now."""
    return checkpoint.Checkpoint(
        model=trainer.model.state_dict(), optimizer=trainer.opt.state_dict(),
        rngs={name: rng.state_dict() for name, rng in trainer.rngs.items()},
        counters=asdict(trainer.at), running=trainer.running.state_dict(), metrics=trainer.log.columns(),
        best_val=trainer.best_val, train_time_s=trainer.train_time, elapsed_s=trainer.elapsed(),
        mean=trainer.mean, std=trainer.std, config=OmegaConf.to_yaml(OmegaConf.structured(trainer.cfg)))


def restore(trainer, ck: checkpoint.Checkpoint) -> None:
    """Put every piece of ``ck``'s state into ``trainer`` (the inverse of :func:`snapshot`)."""
    trainer.model.load_state_dict(ck.model)
    trainer.opt.load_state_dict(ck.optimizer)
    for name, rng in trainer.rngs.items():
        rng.load_state_dict(ck.rngs[name])
    trainer.at = type(trainer.at)(**ck.counters)
    trainer.running.load_state_dict(ck.running)
    trainer.best_val, trainer.train_time, trainer.elapsed_before = ck.best_val, ck.train_time_s, ck.elapsed_s
    trainer.log = metrics.MetricsLog.from_columns(ck.metrics)


def resume(trainer, path) -> None:
    """Continue ``trainer`` (not yet fitted) from the checkpoint at ``path`` (a run folder or a
    .npz file), refusing a checkpoint whose pinned settings differ from the trainer's."""
    path = checkpoint.resolve(path)
    ck = checkpoint.read(path)
    changed = pinned_changes(embedded_config(ck, str(path)), trainer.cfg)
    if changed:
        raise CheckpointError(f"cannot resume from {path}: this run's settings differ from the run that wrote "
                              f"it ({'; '.join(changed)}). A resumed run must keep the seed, data, model, "
                              f"optimizer, batch size and length, or its results would mean nothing; "
                              f"resume with the same settings, or start a new run")
    try:
        restore(trainer, ck)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot resume from {path}: it was saved from a different model ({exc}); "
                              f"use the same model settings as the run that wrote it") from None
    trainer.resumed_from = path
    log.info("resumed from %s at step %d (epoch %d, batch %d)", path, trainer.at.step, trainer.at.epoch,
             trainer.at.batch)


def start_from(model, model_name: str, path) -> None:
    """Load outside weights into ``model`` (fine-tuning): the weights only, with resume's shape
    checks; the optimizer, counters and random streams start afresh."""
    weights, _ = load_weights(path, "best")
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"train.init_from={path}: the weights do not fit model {model_name!r} "
                              f"({exc}); choose the model file they were trained with") from None
    log.info("starting from the weights in %s", path)
