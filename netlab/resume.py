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
from pathlib import Path

from omegaconf import OmegaConf

from . import checkpoint, metrics
from .config import flatten
from .errors import CheckpointError
from .saved import LATEST, embedded_config, latest_run, load_weights

log = logging.getLogger("netlab.train")

# What may differ between a run and the run it resumes: where and how it computes and reports,
# never what it computes. Everything else (seed, data, model, optimizer, batch size, length) is pinned.
RESUME_MAY_CHANGE = ("backend", "debug", "data.root", "data.download", "data.verify", "train.eval_every",
                     "train.eval_batch_size", "train.checkpoint_every", "train.resume", "train.init_from",
                     "train.patience", "train.progress", "logger")

LENGTH_FREE_SCHEDULES = ("constant", "step")  # their lr does not depend on the run's length

# train.resume=auto: continue this run's own folder when it holds a checkpoint, else start. What a
# sweep job that Slurm requeued (time limit, preemption) needs: it runs again with the same
# overrides into the same folder, and goes on from its last checkpoint there.
AUTO = "auto"


def own_folder() -> Path:
    """The folder this run writes into, inside a running Hydra app (also before Hydra made it)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:  # no Hydra app: the Python API
        raise CheckpointError("train.resume=auto continues the run folder a command writes into (a sweep "
                              "job's); from Python, name the run to continue: train__resume=RUN") from None
    return Path(str(hc.runtime.output_dir if hc.mode == RunMode.MULTIRUN else hc.run.dir))


def settle_auto(cfg):
    """``cfg`` for a run whose ``train.resume`` is ``auto``, with nothing to continue yet (a sweep
    job's first start): ``train.resume`` unset. Any other ``cfg`` as it is."""
    if OmegaConf.select(cfg, "train.resume") != AUTO or checkpoint_of(own_folder()) is not None:
        return cfg
    import copy

    from omegaconf import open_dict

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.train.resume = None
    return cfg


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
    path = Path(run_folder(path) if str(path) in (LATEST, AUTO) else path).expanduser()
    path = (checkpoint_of(path) or path / "checkpoints" / "last.npz") if path.is_dir() else path
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


def run_folder(spec) -> Path:
    """The run folder that ``train.resume=spec`` continues: ``spec`` itself (a run folder), the
    folder of a checkpoint file (``RUN/checkpoints/last.npz``), ``latest``: the newest run
    under ``outputs/`` that has a checkpoint to continue from, or ``auto``: this run's own
    folder, which holds a checkpoint (see :func:`settle_auto` for when it does not)."""
    if str(spec) == LATEST:
        return latest_run(finished=False)
    if str(spec) == AUTO:
        folder = own_folder()
        if checkpoint_of(folder) is None:
            raise CheckpointError(f"train.resume=auto: {folder} holds no checkpoint to continue. auto is for a "
                                  f"sweep's jobs (sweep=slurm sets it: a requeued job continues its own folder, a "
                                  f"first start starts); sweep with -m, name the run to continue "
                                  f"(train.resume=RUN or latest), or leave train.resume unset to start")
        return folder
    path = Path(spec).expanduser()
    if path.is_file():
        folder = checkpoint.run_dir(path)
        if folder is None:
            raise CheckpointError(f"train.resume={spec}: a checkpoint file continues in its run folder "
                                  f"(RUN/checkpoints/NAME.npz); this one is not in one. Give hydra.run.dir= "
                                  f"for the continued run's outputs")
        return folder
    if checkpoint_of(path) is None:
        raise CheckpointError(f"train.resume={spec}: no run to continue there (no checkpoints/last.npz or "
                              f"best.npz); give a run folder such as outputs/DATE/TIME, or train.resume=latest")
    return path


def checkpoint_of(folder: Path) -> Path | None:
    """The checkpoint a run folder continues from: its last, or its best when the last was never
    written (a disk that filled up at the first checkpoint)."""
    for name in ("last", "best"):
        if (folder / "checkpoints" / f"{name}.npz").is_file():
            return folder / "checkpoints" / f"{name}.npz"
    return None


def continued_overrides(folder: Path, given: list[str]) -> list[str]:
    """The overrides that start the run in ``folder`` again as it was started (its recorded
    ``.hydra/overrides.yaml``), followed by ``given`` (this command's, ``train.resume=`` among
    them), which replace the recorded ones of the same key. Settings that a resumed run may not
    change are then refused by :func:`resume` with the difference named."""
    recorded_file = folder / ".hydra" / "overrides.yaml"
    recorded = []
    if recorded_file.is_file():
        data = checkpoint.plain_yaml(recorded_file.read_text(), f"{recorded_file}")
        if not isinstance(data, list) or not all(isinstance(o, str) for o in data):
            raise CheckpointError(f"{recorded_file} is not a list of overrides; it is damaged")
        recorded = data
    elif checkpoint_of(folder) is None:
        raise CheckpointError(f"{folder} holds no run to continue")
    given_keys = {_key(o) for o in given}
    kept = [o for o in recorded if _key(o) not in given_keys and not _key(o).startswith(("hydra.", "hydra/"))
            and _key(o) != "train.resume"]
    return kept + list(given)


def _key(override: str) -> str:
    """The key or group an override sets: ``+train.x=1`` -> ``train.x``, ``optimizer=sgd`` -> ``optimizer``."""
    return override.split("=", 1)[0].lstrip("+~")


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
