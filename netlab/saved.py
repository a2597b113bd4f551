"""A trained model read back: its weights in a model, the config it was trained with, and how
its images were normalised. ``evaluate``, ``predict``, ``export``, ``serve`` and the Python
API read trained models through :func:`load` only.

A model comes from a netlab checkpoint (a run folder, whose best or last checkpoint is read,
or a ``.npz``) or from a safetensors file (``netlab.export``'s, which says its model file
and normalisation in its metadata, or another program's, for which the user names them).
Normalisation has one rule, here: the user's ``mean``/``std`` if given, else the file's, else
a refusal; a model is never fed images normalised by a guess.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from . import backend, checkpoint, metrics, models
from .config import Config, DataConfig, ModelConfig, SavedModelConfig, validate
from .data.datasets import DATASETS
from .errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


@dataclass
class SavedModel:
    """A trained model (eval mode, on ``xp``) and what it needs to be used as it was trained."""

    model: object       # nn.Sequential
    config: Config      # the run's config; for outside weights, the defaults with their model file
    mean: float | tuple  # normalisation: (pixels in [0, 1] - mean) / std, a number or one per channel
    std: float | tuple
    path: Path          # the file the weights came from
    step: int | None    # the training step they are from, when the file says
    xp: object
    history: list | None = None  # the metrics rows of the run up to that step (a checkpoint's), else None

    @property
    def run_dir(self) -> Path | None:
        """The run folder the weights belong to (``RUN/checkpoints/x.npz`` -> ``RUN``), if any."""
        return checkpoint.run_dir(self.path)

    @property
    def classes(self) -> list[str]:
        """The class names: the dataset's, or those recorded for a folder dataset (its subfolders)."""
        return list(self.config.data.classes or DATASETS.lookup(self.config.data.name).classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.model.input_shape)

    def accuracy(self, split: str = "test") -> float | None:
        """The ``split`` accuracy of these weights, measured when they were saved (a checkpoint's)."""
        rows = [r for r in self.history or () if r["step"] == self.step and r["split"] == split]
        return rows[-1]["accuracy"] if rows else None


def embedded_config(ck: checkpoint.Checkpoint, where: str) -> Config:
    """The validated config that a checkpoint embeds (its YAML read as data, then checked)."""
    try:
        return validate(checkpoint.config_mapping(ck, where))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: its embedded config is invalid: {exc}") from None


LATEST = "latest"
OUTPUTS = Path("outputs")  # where runs go by default (conf/config.yaml's hydra.run.dir)


def latest_run(finished: bool = True, root: Path = OUTPUTS) -> Path:
    """The newest run folder under ``root`` (``outputs/DATE/TIME``): finished (it has
    ``results.json``) or, with ``finished=False``, any that has a checkpoint to continue from."""
    markers = ["results.json"] if finished else ["checkpoints/last.npz", "checkpoints/best.npz"]
    runs = [p for m in markers for p in root.glob(f"*/*/{m}") if p.is_file()] if root.is_dir() else []
    if not runs:
        what = "finished run (with results.json)" if finished else "run with a checkpoint"
        raise CheckpointError(f"latest: no {what} under {root.resolve()}; run from the folder that holds "
                              f"outputs/, or name the run folder")
    newest = max(runs, key=lambda p: (p.stat().st_mtime, str(p)))
    folder = newest.parent if finished else newest.parent.parent
    log.info("latest: %s", folder)
    print(f"netlab: latest is {folder}", file=sys.stderr, flush=True)
    return folder


def resolve(path, which: str = "best") -> Path:
    """The weights file that ``path`` names: the file itself, a run folder's ``which`` checkpoint,
    or ``latest``: the newest finished run under ``outputs/``."""
    return checkpoint.resolve(latest_run() if str(path) == LATEST else path, which)


def is_safetensors(path) -> bool:
    return Path(path).suffix == ".safetensors"


def load_weights(path, which: str = "best") -> tuple[dict, dict]:
    """``(state_dict, metadata)`` of weights from outside or inside: a safetensors file (its
    metadata as written by ``netlab.export``, or none) or a netlab checkpoint (its config,
    normalisation and step)."""
    path = resolve(path, which)
    if is_safetensors(path):
        from .exporters.safetensors import read_safetensors

        return read_safetensors(path)
    ck = checkpoint.read(path)
    return ck.model, {"checkpoint": ck, "mean": ck.mean, "std": ck.std, "step": ck.counters["step"]}


def load(path, xp=None, which: str = "best", model: ModelConfig | None = None, mean: float | None = None,
         std: float | None = None, conv: str = "auto") -> SavedModel:
    """The trained model at ``path`` (a run folder, a checkpoint ``.npz`` or a ``.safetensors``
    file) on namespace ``xp`` (default NumPy). ``model`` is the model file, for weights that do
    not say theirs; ``mean`` and ``std`` override the normalisation the file holds; ``conv`` is
    how its convolutions compute (``backend.conv``)."""
    xp = xp if xp is not None else backend.namespace("numpy")
    path = resolve(path, which)
    weights, meta = load_weights(path)
    if "checkpoint" in meta:
        cfg = embedded_config(meta["checkpoint"], str(path))
    else:
        cfg = _outside_config(path, meta, model)
    if model is not None:
        cfg.model = model
    mean = _channels(mean) if mean is not None else _channels(meta.get("mean"))
    std = _channels(std) if std is not None else _channels(meta.get("std"))
    if mean is None or std is None or min(std if isinstance(std, tuple) else (std,)) <= 0:
        raise ConfigError(f"{path} does not say how its images were normalised; give mean= and std= (the "
                          f"training images' pixel mean and standard deviation, in [0, 1] units)")
    channels = cfg.model.input_shape[0] if len(cfg.model.input_shape) == 3 else 1
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, tuple) and len(value) != channels:
            raise CheckpointError(f"{path}: its normalisation {name} has {len(value)} channels but the model "
                                  f"takes {channels}")
    try:
        built = models.build(cfg.model, conv)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its model cannot be built: {exc}") from None
    try:
        built.load_state_dict(weights)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the model {cfg.model.name!r} ({exc})") from None
    step = meta.get("step", meta.get("checkpoint_step"))
    history = metrics.MetricsLog.from_columns(meta["checkpoint"].metrics).rows if "checkpoint" in meta else None
    return SavedModel(built.to(xp).eval(), cfg, mean, std, path, None if step is None else int(step), xp, history)


def open_for(cfg: SavedModelConfig) -> SavedModel:
    """The model that a command's settings name (``checkpoint``, ``which``, ``model``, ``mean``,
    ``std``), on its backend, with its ``backend.threads`` in force."""
    if cfg.backend.threads:
        backend.set_threads(cfg.backend.threads)
    return load(cfg.checkpoint, backend.namespace(cfg.backend.name), cfg.which, model=cfg.model, mean=cfg.mean,
                std=cfg.std, conv=cfg.backend.conv)


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


MAX_CHANNELS = 4096  # models.build's bound on an input size


def _channels(value):
    """A normalisation statistic as netlab uses it: a number (one channel, or every channel
    alike) or a tuple of one finite number per channel; from a number, a sequence, an array, or
    text (a safetensors file's metadata: ``0.13`` or ``[0.49, 0.48, 0.45]``). None if it is
    none of these."""
    import json

    import numpy as np

    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip().startswith("[") else value
        except ValueError:
            return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= MAX_CHANNELS or any(isinstance(v, (bool, list, tuple, dict)) for v in value):
            return None
        numbers = [_number(v) for v in value]
        if any(v is None for v in numbers):
            return None
        return numbers[0] if len(numbers) == 1 else tuple(numbers)
    return None if isinstance(value, bool) else _number(value)


def _outside_config(path, meta: dict, model):
    """The Config of weights from a safetensors file: the defaults, its dataset, and its model
    file (the metadata's, read as data, or the one the user names)."""
    if model is None:
        if "model" not in meta:
            raise CheckpointError(f"{path} says nothing of its model; name the model file it fits, e.g. "
                                  f"model=seed_cnn")
        layers = checkpoint.plain_yaml(meta["model"], f"{path}: its model metadata")
        if not isinstance(layers, dict) or not isinstance(layers.get("layers"), list):
            raise CheckpointError(f"{path}: its model metadata is not a list of layers")
        shape = _shape(meta.get("input_shape", "[1, 28, 28]"))
        if shape is None:
            raise CheckpointError(f"{path}: its input_shape metadata is not a JSON list of sizes")
        try:
            model = ModelConfig(name=str(meta.get("model_name", "outside")), layers=layers["layers"],
                                num_classes=int(meta.get("num_classes", 10)), input_shape=shape)
        except (ConfigError, ValueError) as exc:
            raise CheckpointError(f"{path}: its model metadata is invalid ({exc})") from None
    classes = None
    if not DATASETS.get(str(meta.get("dataset", "mnist")), DATASETS["mnist"]).classes:
        classes = _names(meta.get("classes"))  # a folder dataset's class names live in the file's metadata
        if classes is None:
            raise CheckpointError(f"{path}: its classes metadata is not a JSON list of names (a folder "
                                  f"dataset's classes are its subfolders, which the file must name)")
    try:
        return Config(data=DataConfig(name=str(meta.get("dataset", "mnist")), classes=classes), model=model)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _names(text):
    """A JSON list of class names (a safetensors file's ``classes`` metadata), or None."""
    import json

    try:
        names = json.loads(text)
    except (TypeError, ValueError):
        return None
    ok = isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    return names if ok else None


def _shape(text):
    """A JSON list of one to three sizes (a safetensors file's ``input_shape`` metadata), or None."""
    import json

    try:
        shape = json.loads(text)
    except (TypeError, ValueError):
        return None
    ok = isinstance(shape, list) and 1 <= len(shape) <= 3 and all(
        isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_CHANNELS for d in shape)
    return shape if ok else None
