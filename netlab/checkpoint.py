"""The checkpoint format, all of it: what a checkpoint holds, writing, reading and checking.

A checkpoint is one ``.npz`` of plain arrays (``numpy.load(..., allow_pickle=False)`` reads
it), written atomically. Its keys:

- ``model.<state_dict key>``: weights and buffers under PyTorch's names;
- ``optim.steps``, ``optim.state.<param key>.<buffer>``: the optimizer;
- ``rng.<name>.seed``, ``rng.<name>.counter``: each random stream (dropout, augment);
- the loop's counters (:data:`COUNTERS`), ``best_val``, ``train_time_s``, ``elapsed_s``;
- ``run_loss``, ``run_correct``, ``run_count``: training sums since the last evaluation;
- ``metrics.<column>``: the metrics log so far;
- ``data_mean``, ``data_std``: the normalisation the model trained with;
- ``config``: the run's config as YAML; ``format``: :data:`FORMAT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from . import backend, models
from .config import validate
from .errors import CheckpointError
from .metrics import COLUMNS
from .outputs import atomic_write

FORMAT = 1
COUNTERS = ("step", "epoch", "batch", "best_step", "evals_since_best", "images")
MODEL, OPTIM, RNG, METRICS = "model.", "optim.", "rng.", "metrics."


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    model: dict                   # Module.state_dict()
    optimizer: dict               # Optimizer.state_dict()
    rngs: dict                    # name -> Generator.state_dict()
    counters: dict                # COUNTERS -> int
    running: dict                 # metrics.Running.state_dict()
    metrics: dict                 # column -> list (metrics.MetricsLog.columns())
    best_val: float = -1.0
    train_time_s: float = 0.0
    elapsed_s: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    config: str = ""

    def to_arrays(self) -> dict:
        out = {MODEL + k: v for k, v in self.model.items()}
        out.update({OPTIM + k: v for k, v in self.optimizer.items()})
        for name, state in self.rngs.items():
            out[f"{RNG}{name}.seed"], out[f"{RNG}{name}.counter"] = state["seed"], state["counter"]
        out.update({k: self.counters[k] for k in COUNTERS})
        out.update(run_loss=self.running["loss"], run_correct=self.running["correct"],
                   run_count=self.running["count"])
        out.update({METRICS + c: self.metrics[c] for c in COLUMNS})
        out.update(best_val=self.best_val, train_time_s=self.train_time_s, elapsed_s=self.elapsed_s,
                   data_mean=self.mean, data_std=self.std, config=self.config, format=FORMAT)
        return out

    @classmethod
    def from_arrays(cls, st: dict, where: str = "checkpoint") -> "Checkpoint":
        try:
            names = {k[len(RNG):].rsplit(".", 1)[0] for k in st if k.startswith(RNG)}
            return cls(
                model=_prefixed(st, MODEL), optimizer=_prefixed(st, OPTIM),
                rngs={n: {"seed": int(st[f"{RNG}{n}.seed"]), "counter": int(st[f"{RNG}{n}.counter"])} for n in names},
                counters={k: int(st[k]) for k in COUNTERS},
                running={"loss": st["run_loss"], "correct": st["run_correct"], "count": int(st["run_count"])},
                metrics={c: list(st[METRICS + c]) for c in COLUMNS},
                best_val=float(st["best_val"]), train_time_s=float(st["train_time_s"]),
                elapsed_s=float(st["elapsed_s"]), mean=float(st["data_mean"]), std=float(st["data_std"]),
                config=str(st["config"]),
            )
        except KeyError as exc:
            raise CheckpointError(f"{where} lacks the field {exc}; it was not written by this netlab "
                                  f"version or is damaged") from None


def _prefixed(st: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}


def resolve(path) -> Path:
    """``path`` itself, or ``path/checkpoints/last.npz`` when it is a run directory."""
    path = Path(path).expanduser()
    return path / "checkpoints" / "last.npz" if path.is_dir() else path


def write(path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a crash leaves the previous file intact)."""
    arrays = {k: backend.to_numpy(v) if not isinstance(v, str) else np.asarray(v)
              for k, v in checkpoint.to_arrays().items()}
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def read_arrays(path) -> dict:
    """The arrays of the checkpoint at ``path`` (a run directory or a .npz file), format checked."""
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; give a run directory (with "
                              f"checkpoints/last.npz) or a .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            st = {k: f[k] for k in f.files}
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable netlab checkpoint ({exc})") from None
    if "config" not in st or "format" not in st or int(st["format"]) != FORMAT:
        raise CheckpointError(f"{path} is not a netlab checkpoint (format {FORMAT})")
    return st


def read(path) -> Checkpoint:
    """The :class:`Checkpoint` at ``path`` (a run directory or a .npz file)."""
    return Checkpoint.from_arrays(read_arrays(path), str(resolve(path)))


def load_model(path, xp):
    """``(model, config, mean, std)`` from a checkpoint: the model in eval mode on namespace
    ``xp``, the run's validated config, and the normalisation it trained with."""
    ck = read(path)
    cfg = validate(OmegaConf.create(ck.config))
    model = models.build(cfg.model)
    try:
        model.load_state_dict(ck.model)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{resolve(path)}: weights do not fit the model in its config ({exc})") from None
    return model.to(xp).eval(), cfg, ck.mean, ck.std
