"""The checkpoint format, all of it: what a checkpoint holds, writing, reading and checking.

A checkpoint is one ``.npz`` of plain arrays (``numpy.load(..., allow_pickle=False)`` reads
it), written atomically. Its keys:

- ``model.<state_dict key>``: weights and buffers under PyTorch's names;
- ``optim.steps``, ``optim.state.<param key>.<buffer>``: the optimizer;
- ``rng.<name>.seed``, ``rng.<name>.counter``: each random stream (dropout, augment);
- the loop's counters (:data:`COUNTERS`), ``best_val``, ``train_time_s``, ``elapsed_s``;
- ``run_loss``, ``run_correct``, ``run_count``: training sums since the last evaluation;
- ``metrics.<column>``: the metrics log so far;
- ``data_mean``, ``data_std``: the normalisation the model trained with (numbers for one
  channel; 1-d arrays of one number per channel for more);
- ``config``: the run's config as YAML; ``format``: :data:`FORMAT`.

This module is the format only: it knows arrays, numbers and text, not models or the schema
(``netlab.saved`` builds a model from a checkpoint, ``netlab.resume`` continues a run from one).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from . import backend
from .errors import CheckpointError
from .metrics import COLUMNS, SPLITS
from .outputs import atomic_write

FORMAT = 1
MAX_BYTES = 1 << 31  # 2 GiB unpacked: the largest model netlab builds (models.MAX_PARAMETERS) fits 10 times
MAX_ARRAYS = 10_000
MAX_CONFIG_CHARS = 1 << 20
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
    mean: float | tuple = 0.0   # a number, or one per channel
    std: float | tuple = 1.0
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
                   data_mean=_statistic(self.mean), data_std=_statistic(self.std), config=self.config,
                   format=FORMAT)
        return out

    @classmethod
    def from_arrays(cls, st: dict, where: str = "checkpoint") -> "Checkpoint":
        """A :class:`Checkpoint` from its arrays, every field checked (type, shape, finiteness)."""
        f = _Fields(st, where)
        names = sorted({k[len(RNG):].rsplit(".", 1)[0] for k in st if k.startswith(RNG)})
        return cls(
            model=f.arrays(MODEL, counts=("num_batches_tracked",)), optimizer=f.arrays(OPTIM, counts=("steps",)),
            rngs={n: {"seed": f.integer(f"{RNG}{n}.seed"), "counter": f.integer(f"{RNG}{n}.counter")} for n in names},
            counters={k: f.integer(k) for k in COUNTERS},
            running={"loss": f.number("run_loss"), "correct": f.number("run_correct"), "count": f.integer("run_count")},
            metrics=f.columns(METRICS, COLUMNS),
            best_val=f.number("best_val", low=-1.0), train_time_s=f.number("train_time_s"),
            elapsed_s=f.number("elapsed_s"), mean=f.channels("data_mean"),
            std=f.channels("data_std", positive=True), config=f.text("config"),
        )


MAX_CHANNELS = 4096  # models.build's bound on an input size


def _statistic(value):
    """A normalisation statistic as stored: a number as it is, one per channel as a 1-d array."""
    return np.asarray(value, dtype=np.float64) if isinstance(value, (tuple, list)) else value


class _Fields:
    """Typed, checked access to a checkpoint's arrays; a bad field is a CheckpointError naming it."""

    def __init__(self, st: dict, where: str):
        self.st, self.where = st, where

    def _get(self, key):
        if key not in self.st:
            raise CheckpointError(f"{self.where} lacks the field '{key}'; it was not written by this netlab "
                                  f"version or is damaged")
        return self.st[key]

    def _bad(self, key, rule):
        return CheckpointError(f"{self.where}: field '{key}' must be {rule}; the checkpoint is damaged")

    def integer(self, key) -> int:
        a = self._get(key)
        if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
            raise self._bad(key, "an integer >= 0")
        return int(a)

    def number(self, key, low: float | None = 0.0, positive: bool = False) -> float:
        a = self._get(key)
        if a.shape != () or a.dtype.kind not in "iuf" or not math.isfinite(float(a)) \
                or (low is not None and float(a) < low) or (positive and float(a) <= 0):
            rule = "a finite number" + (" > 0" if positive else f" >= {low:g}" if low is not None else "")
            raise self._bad(key, rule)
        return float(a)

    def channels(self, key, positive: bool = False):
        """A normalisation statistic: a finite number (one channel), or a 1-d array of one finite
        number per channel (> 0 with ``positive``), given back as a tuple."""
        a = self._get(key)
        if a.shape == ():
            return self.number(key, low=None, positive=positive)
        if a.ndim != 1 or not 1 <= a.shape[0] <= MAX_CHANNELS or a.dtype.kind not in "iuf" \
                or not np.all(np.isfinite(a)) or (positive and not np.all(a > 0)):
            rule = "a finite number or a 1-d array of finite numbers, one per channel" + (
                ", each > 0" if positive else "")
            raise self._bad(key, rule)
        values = tuple(float(v) for v in a)
        return values[0] if len(values) == 1 else values

    def text(self, key) -> str:
        a = self._get(key)
        if a.shape != () or a.dtype.kind != "U" or len(str(a)) > MAX_CONFIG_CHARS:
            raise self._bad(key, f"text of at most {MAX_CONFIG_CHARS:,} characters")
        return str(a)

    def arrays(self, prefix, counts=()) -> dict:
        """The arrays under ``prefix``: floats (weights, optimizer state), except the keys ending
        in one of ``counts``, which are integers >= 0 (batch-norm's count, the optimizer's steps):
        an integer weight would be cast silently and trained on."""
        out = _prefixed(self.st, prefix)
        for key, a in out.items():
            if key.endswith(counts):
                if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
                    raise self._bad(prefix + key, "an integer >= 0")
                continue
            if a.dtype.kind != "f":
                raise self._bad(prefix + key, f"floating-point numbers, not {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise CheckpointError(f"{self.where}: {prefix}{key} holds NaN or infinite values, so its weights "
                                      f"or optimizer state are unusable; resume from an earlier checkpoint")
        return out

    def columns(self, prefix, names) -> dict:
        """The metrics log: equal-length columns, ``split`` text among the splits, ``step`` integers
        >= 0, every other column finite numbers."""
        cols = {c: self._get(prefix + c) for c in names}
        lengths = {a.shape for a in cols.values()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise self._bad(prefix + "*", "columns of one dimension and equal length")
        for c, a in cols.items():
            if a.size == 0:  # no evaluation yet (a checkpoint before the first one): empty of any dtype
                continue
            if c == "split":
                if a.dtype.kind != "U" or not set(a.tolist()) <= set(SPLITS):
                    raise self._bad(prefix + c, f"text among {', '.join(SPLITS)}")
            elif c == "step":
                if a.dtype.kind not in "iu" or (a.size and a.min() < 0):
                    raise self._bad(prefix + c, "integers >= 0")
            elif a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
                raise self._bad(prefix + c, "finite numbers")
        return {c: list(a) for c, a in cols.items()}


def config_mapping(ck: Checkpoint, where: str = "checkpoint") -> dict:
    """The settings mapping that ``ck`` embeds, read as plain YAML data (see :func:`plain_yaml`)."""
    data = plain_yaml(ck.config, f"{where}: its embedded config")
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: its embedded config is not a mapping of settings")
    return data


def plain_yaml(text: str, what: str):
    """YAML ``text`` from a file from outside, read as data: bounded in length, and no anchors,
    aliases (whose expansion can exhaust memory) or tags (which name Python types); netlab writes none."""
    try:
        if len(text) > MAX_CONFIG_CHARS:
            raise CheckpointError(f"{what} is longer than {MAX_CONFIG_CHARS:,} characters; refusing it")
        if any(isinstance(t, (yaml.AnchorToken, yaml.AliasToken, yaml.TagToken)) for t in yaml.scan(text)):
            raise CheckpointError(f"{what} uses YAML anchors, aliases or tags, which netlab never writes; "
                                  f"refusing it")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{what} is not valid YAML ({str(exc).splitlines()[0]})") from None


def _prefixed(st: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}


def resolve(path, which: str = "last") -> Path:
    """``path`` itself, or ``path/checkpoints/<which>.npz`` (which: last or best) when it is a run directory."""
    path = Path(path).expanduser()
    return path / "checkpoints" / f"{which}.npz" if path.is_dir() else path


def run_dir(path: Path) -> Path | None:
    """The run folder a checkpoint file belongs to (``RUN/checkpoints/x.npz`` -> ``RUN``), if any."""
    path = Path(path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def write(path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a crash leaves the previous file intact)."""
    arrays = {k: backend.to_numpy(v) if not isinstance(v, str) else np.asarray(v)
              for k, v in checkpoint.to_arrays().items()}
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def read_arrays(path, which: str = "last") -> dict:
    """The arrays of the checkpoint at ``path`` (a run directory or a .npz file).

    A checkpoint may come from anywhere, so it is read as data: the archive's directory and
    every array's header first (names, dtypes, shapes, sizes, all bounded), no pickles, and only
    then the arrays themselves."""
    path = resolve(path, which)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; give a run directory (with checkpoints/{which}.npz) "
                              f"or a .npz file")
    try:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is not a netlab checkpoint: it is not an .npz archive")
        with zipfile.ZipFile(path) as archive:
            _check_directory(path, archive)
        with np.load(path, allow_pickle=False) as f:
            st = {k: f[k] for k in f.files}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{path} is not a readable netlab checkpoint: the archive is damaged "
                              f"({type(exc).__name__})") from None
    if "config" not in st or "format" not in st:
        raise CheckpointError(f"{path} is not a netlab checkpoint (it has no config or format field)")
    if st["format"].shape != () or st["format"].dtype.kind not in "iu" or int(st["format"]) != FORMAT:
        raise CheckpointError(f"{path} is a checkpoint of format {st['format']!s}; this netlab reads format {FORMAT}")
    return st


def _check_directory(path, archive: zipfile.ZipFile) -> None:
    """Every member a plain .npy array of a numeric or string dtype, all of them together within
    :data:`MAX_BYTES` once decompressed, each as large as its header says."""
    infos = archive.infolist()
    if len(infos) > MAX_ARRAYS:
        raise CheckpointError(f"{path} holds {len(infos)} arrays; a netlab checkpoint has far fewer")
    if sum(i.file_size for i in infos) > MAX_BYTES:
        raise CheckpointError(f"{path} would take more than {MAX_BYTES:,} bytes once unpacked; refusing it")
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise CheckpointError(f"{path} is not a netlab checkpoint (it holds {info.filename!r})")
        with archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
            except ValueError:
                raise CheckpointError(f"{path}: {info.filename} is not a .npy array") from None
        if dtype.hasobject or dtype.kind not in "biufU":
            raise CheckpointError(f"{path}: {info.filename} has dtype {dtype}; netlab stores numbers and text only")
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise CheckpointError(f"{path}: {info.filename} claims shape {shape}, more than the archive holds")


def read(path, which: str = "last") -> Checkpoint:
    """The :class:`Checkpoint` at ``path`` (a run directory, whose ``which`` checkpoint is read, or a .npz file)."""
    return Checkpoint.from_arrays(read_arrays(path, which), str(resolve(path, which)))
