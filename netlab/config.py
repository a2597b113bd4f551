"""Typed configuration: the schema behind ``conf/``.

Hydra composes the YAML files onto these dataclasses, so a wrong type or an unknown key is
refused while composing; :func:`validate` then builds the dataclasses, whose checks refuse
invalid values (negative lr, batch size 0, ...) before any data is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .backend import NAMES as BACKENDS
from .data.augment import Augment
from .data.files import DATASETS
from .errors import ConfigError
from .optim import OPTIMIZERS

SCHEDULES = ("constant", "step", "cosine", "onecycle")


def _check(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"invalid setting: {key} must be {rule}, got {value!r}")


@dataclass
class BackendConfig:
    name: str = "numpy"
    threads: Optional[int] = None  # BLAS threads on the CPU; None keeps the library's default

    def __post_init__(self):
        _check(self.name in BACKENDS, "backend.name", f"one of {BACKENDS}", self.name)
        _check(self.threads is None or self.threads >= 1, "backend.threads", ">= 1", self.threads)


@dataclass
class AugmentConfig(Augment):
    enabled: bool = False
    mode: str = "online"  # online: fresh transforms every batch; offline: `copies` per image, made once
    copies: int = 2

    def __post_init__(self):
        try:
            super().__post_init__()
        except ValueError as exc:
            raise ConfigError(f"invalid setting: data.{exc}") from None
        _check(self.mode in ("online", "offline"), "data.augment.mode", "'online' or 'offline'", self.mode)
        _check(self.copies >= 1, "data.augment.copies", ">= 1", self.copies)

    def transform(self) -> Augment:
        return Augment(**{k: getattr(self, k) for k in Augment.__dataclass_fields__})


@dataclass
class DataConfig:
    name: str = "mnist"
    root: Optional[str] = None  # folder with the four IDX files; None: $NETLAB_DATA/<name> or the cache
    download: bool = True
    verify: bool = True
    val_fraction: float = 0.1
    normalize: bool = True      # zero mean, unit variance from training statistics; off: pixels in [0, 1]
    shuffle: bool = True
    limit: Optional[int] = None  # keep only the first images of each file (smoke runs)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        _check(self.name in DATASETS, "data.name", f"one of {tuple(DATASETS)}", self.name)
        _check(0.0 < self.val_fraction < 1.0, "data.val_fraction", "in (0, 1)", self.val_fraction)
        _check(self.limit is None or self.limit >= 2, "data.limit", ">= 2", self.limit)


@dataclass
class ModelConfig:
    name: str = "seed_cnn"
    dropout: float = 0.0
    input_shape: List[int] = field(default_factory=lambda: [1, 28, 28])
    num_classes: int = 10
    layers: List[Any] = field(default_factory=list)

    def __post_init__(self):
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)


@dataclass
class ScheduleConfig:
    name: str = "constant"
    step_size: int = 1000
    gamma: float = 0.1
    warmup_steps: int = 0
    min_lr: float = 0.0
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self):
        _check(self.name in SCHEDULES, "optimizer.schedule.name", f"one of {SCHEDULES}", self.name)
        _check(self.step_size >= 1, "optimizer.schedule.step_size", ">= 1", self.step_size)
        _check(0.0 < self.pct_start < 1.0, "optimizer.schedule.pct_start", "in (0, 1)", self.pct_start)


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    alpha: float = 0.99
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self):
        _check(self.name in OPTIMIZERS, "optimizer.name", f"one of {tuple(OPTIMIZERS)}", self.name)
        _check(self.lr > 0, "optimizer.lr", "> 0", self.lr)
        _check(self.weight_decay >= 0, "optimizer.weight_decay", ">= 0", self.weight_decay)
        _check(self.momentum >= 0, "optimizer.momentum", ">= 0", self.momentum)
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optimizer.betas",
               "two numbers in [0, 1)", list(self.betas))
        _check(self.eps > 0, "optimizer.eps", "> 0", self.eps)
        _check(0 <= self.alpha < 1, "optimizer.alpha", "in [0, 1)", self.alpha)
        _check(not self.nesterov or self.momentum > 0, "optimizer.momentum", "> 0 with nesterov", self.momentum)


@dataclass
class TrainConfig:
    epochs: int = 2
    batch_size: int = 64
    max_steps: Optional[int] = None
    eval_every: int = 250
    eval_batch_size: int = 1000
    checkpoint_every: int = 250
    resume: Optional[str] = None  # a run directory or a checkpoint .npz
    patience: int = 0             # stop after this many evaluations without a better val accuracy; 0: off
    progress: bool = True         # a progress bar on a terminal (plain log lines otherwise)

    def __post_init__(self):
        for key in ("epochs", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every"):
            _check(getattr(self, key) >= 1, f"train.{key}", "an integer >= 1", getattr(self, key))
        _check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", ">= 1", self.max_steps)
        _check(self.patience >= 0, "train.patience", ">= 0", self.patience)


@dataclass
class Config:
    backend: BackendConfig = field(default_factory=BackendConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    debug: bool = False  # show tracebacks for user errors


def register() -> None:
    """Make the schema available to ``conf/config.yaml``'s defaults list as ``netlab_schema``."""
    ConfigStore.instance().store(name="netlab_schema", node=Config)


register()


def validate(cfg: DictConfig) -> Config:
    """Turn the composed config into checked dataclasses; any problem is a :class:`ConfigError`."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ConfigError) else None
        if cause is not None:
            raise cause from None
        raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]} "
                          f"(key {getattr(exc, 'full_key', '?')})") from None
