"""Typed configuration: the one home of every default, and the schema behind ``conf/``.

Each config group's options are dataclasses stored in Hydra's ConfigStore (``backend/numpy``,
``data/mnist``, ``optimizer/adam``, ``train/default``, ...), so the values here are the
defaults of the command line and of the Python API alike; ``conf/`` holds only what is data
(model files), presets that override a few keys (experiments, sweeps) and the defaults list.
Hydra refuses a wrong type or an unknown key while composing; :func:`validate` then builds
the dataclasses, whose checks refuse invalid values before any data is read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .backend import NAMES as BACKENDS
from .data.augment import Augment
from .data.files import DATASETS
from .errors import ConfigError
from .loggers import LOGGER_CONFIGS, LOGGERS, CsvConfig
from .nn.layers import AUTO, CONV_ALGORITHMS
from .optim import OPTIMIZERS, SCHEDULES, check_hyperparameters

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _check(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"invalid setting: {key} must be {rule}, got {value!r}")


@dataclass
class BackendConfig:
    name: str = "numpy"            # numpy (CPU), cupy (CUDA GPU), torch or array_api_strict
    threads: Optional[int] = None  # BLAS and FFT threads on the CPU; None keeps the library's default
    conv: str = AUTO               # how convolutions compute: im2col, fft (stride 1) or auto (per layer)

    def __post_init__(self):
        _check(self.name in BACKENDS, "backend.name", f"one of {BACKENDS}", self.name)
        _check(self.threads is None or self.threads >= 1, "backend.threads", ">= 1", self.threads)
        _check(self.conv in (AUTO, *CONV_ALGORITHMS), "backend.conv", f"one of {(AUTO, *CONV_ALGORITHMS)}",
               self.conv)


@dataclass
class AugmentConfig(Augment):
    enabled: bool = True  # augment the training images (never validation or test)
    mode: str = "online"  # online: fresh transforms every batch; offline: `copies` per image, made once
    copies: int = 2       # offline mode: augmented copies of each training image

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
    name: str = "mnist"         # mnist or fashion_mnist
    root: Optional[str] = None  # folder with the four IDX files; None: $NETLAB_DATA/<name> or the cache
    download: bool = True       # fetch missing files (into root, or netlab's cache)
    verify: bool = True         # compare with the official files' SHA-256
    val_fraction: float = 0.1   # training images held out for validation, before any augmentation
    normalize: bool = True      # zero mean, unit variance from training statistics; off: pixels in [0, 1]
    shuffle: bool = True        # a new order of the training images every epoch
    limit: Optional[int] = None  # keep only the first images of each file (smoke runs)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        _check(self.name in DATASETS, "data.name", f"one of {tuple(DATASETS)}", self.name)
        _check(0.0 < self.val_fraction < 1.0, "data.val_fraction", "in (0, 1)", self.val_fraction)
        _check(self.limit is None or self.limit >= 2, "data.limit", ">= 2", self.limit)


@dataclass
class ModelConfig:
    """A model file (``conf/model/*.yaml``): its layers are data, so there is no default model here."""

    name: str = MISSING         # the model file's name (model=seed_cnn, lenet5, mlp, bn_cnn, or yours)
    dropout: float = 0.0        # the p of every `dropout` layer that gives none
    input_shape: List[int] = field(default_factory=lambda: [1, 28, 28])  # channels, height, width
    num_classes: int = 10       # scores the last layer gives; must equal the dataset's classes
    layers: List[Any] = MISSING  # the model file's list of layers (conf/model/*.yaml)

    def __post_init__(self):
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)


@dataclass
class ScheduleConfig:
    name: str = "onecycle"  # warm up to lr over pct_start of the steps, then anneal; constant: lr stays
    step_size: int = 1000   # step: multiply lr by gamma every step_size steps
    gamma: float = 0.1      # step: the factor
    warmup_steps: int = 0   # cosine: linear warm-up, then decay to min_lr
    min_lr: float = 0.0     # cosine: the lr it ends at
    pct_start: float = 0.3  # onecycle: fraction of the steps spent rising to lr
    div_factor: float = 25.0        # onecycle: it starts at lr / div_factor
    final_div_factor: float = 1e4   # onecycle: it ends at lr / (div_factor * final_div_factor)

    def __post_init__(self):
        _check(self.name in SCHEDULES, "optimizer.schedule.name", f"one of {tuple(SCHEDULES)}", self.name)
        _check(self.step_size >= 1, "optimizer.schedule.step_size", ">= 1", self.step_size)
        _check(0.0 < self.pct_start < 1.0, "optimizer.schedule.pct_start", "in (0, 1)", self.pct_start)


@dataclass
class OptimizerConfig:
    """What every optimizer has; each optimizer's own schema below adds its fields and defaults."""

    name: str = MISSING        # chosen with optimizer=sgd, momentum, adam, adagrad or rmsprop
    lr: float = MISSING        # the learning rate; with the one-cycle schedule, its peak
    weight_decay: float = 0.0  # L2: weight_decay * p is added to the gradient
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self):
        _check(self.name in OPTIMIZERS, "optimizer.name", f"one of {tuple(OPTIMIZERS)}", self.name)
        try:
            check_hyperparameters(self.lr, self.weight_decay, getattr(self, "momentum", 0.0))
        except ValueError as exc:
            raise ConfigError(f"invalid setting: optimizer.{exc}") from None


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0      # heavy-ball momentum; the first buffer is the gradient
    nesterov: bool = False     # Nesterov momentum (needs momentum > 0)

    def __post_init__(self):
        super().__post_init__()
        _check(not self.nesterov or self.momentum > 0, "optimizer.momentum", "> 0 with nesterov", self.momentum)


@dataclass
class MomentumConfig(SGDConfig):
    """SGD with (heavy-ball) momentum."""

    name: str = "momentum"
    lr: float = 0.01
    momentum: float = 0.9


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 0.003
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # decay of the two moments
    eps: float = 1e-8          # added to the root of the second moment

    def __post_init__(self):
        super().__post_init__()
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optimizer.betas",
               "two numbers in [0, 1)", list(self.betas))
        _check(self.eps > 0, "optimizer.eps", "> 0", self.eps)


@dataclass
class AdagradConfig(OptimizerConfig):
    name: str = "adagrad"
    lr: float = 0.01
    eps: float = 1e-10         # added outside the square root of the summed squares

    def __post_init__(self):
        super().__post_init__()
        _check(self.eps > 0, "optimizer.eps", "> 0", self.eps)


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    lr: float = 0.001
    alpha: float = 0.99        # decay of the squared-gradient average
    eps: float = 1e-8          # added outside the square root, as PyTorch
    momentum: float = 0.0      # momentum on the scaled step

    def __post_init__(self):
        super().__post_init__()
        _check(self.eps > 0, "optimizer.eps", "> 0", self.eps)
        _check(0 <= self.alpha < 1, "optimizer.alpha", "in [0, 1)", self.alpha)


# optimizer name -> its schema (the names are optim.OPTIMIZERS')
OPTIMIZER_CONFIGS = {c.name: c for c in (SGDConfig, MomentumConfig, AdamConfig, AdagradConfig, RMSpropConfig)}


@dataclass
class TrainConfig:
    epochs: int = 2               # passes over the training images
    batch_size: int = 64          # images per step
    max_steps: Optional[int] = None  # stop after this many steps, if that comes before the last epoch
    eval_every: int = 250         # steps between train/val/test evaluations (and at each epoch's end)
    eval_batch_size: int = 1000   # images per forward pass when evaluating
    checkpoint_every: int = 250   # steps between checkpoints/last.npz
    resume: Optional[str] = None  # a run directory or a checkpoint .npz to continue from
    init_from: Optional[str] = None  # start from these weights (a safetensors file, a run's best or a .npz)
    patience: int = 0             # stop after this many evaluations without a better val accuracy; 0: off
    progress: bool = True         # a progress bar on a terminal (plain log lines otherwise)

    def __post_init__(self):
        for key in ("epochs", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every"):
            _check(getattr(self, key) >= 1, f"train.{key}", "an integer >= 1", getattr(self, key))
        _check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", ">= 1", self.max_steps)
        _check(self.patience >= 0, "train.patience", ">= 0", self.patience)
        _check(not (self.resume and self.init_from), "train.init_from", "unset when resuming (train.resume)",
               self.init_from)


@dataclass
class Config:
    backend: BackendConfig = field(default_factory=BackendConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = MISSING  # conf/config.yaml picks seed_cnn
    optimizer: OptimizerConfig = field(default_factory=AdamConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: Dict[str, Any] = field(default_factory=lambda: {"csv": CsvConfig()})  # logger=csv|tensorboard|mlflow, or a list
    seed: int = 0        # initial weights, the validation split, shuffling, dropout and augmentation
    debug: bool = False  # show tracebacks for user errors


@dataclass
class SourceDataConfig:
    """Where evaluate and predict read data: the user's command line and defaults decide, never
    the checkpoint (a file from outside is data, not instructions)."""

    root: Optional[str] = None  # folder with the dataset's files; None: $NETLAB_DATA/<name> or the cache
    download: bool = True       # fetch missing files into that folder (official checksums checked)
    verify: bool = True


@dataclass
class EvaluateConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    checkpoint: Optional[str] = None  # a run directory, or a .npz file
    which: str = "best"               # of a run directory: best (chosen on validation) or last
    split: str = "test"               # test or val
    batch_size: int = 500
    out: Optional[str] = None         # folder for the outputs; default: the run folder, or beside the .npz
    data: SourceDataConfig = field(default_factory=SourceDataConfig)
    model: Optional[ModelConfig] = None  # the model file, for weights that do not say (safetensors from elsewhere)
    mean: Optional[float] = None      # normalisation, for weights that do not say (default: theirs)
    std: Optional[float] = None
    debug: bool = False

    def __post_init__(self):
        _check(self.checkpoint not in (None, ""), "checkpoint", "the model to evaluate: checkpoint=PATH (a run "
               "directory or a .npz file)", self.checkpoint)
        _check(self.split in ("test", "val"), "split", "'test' or 'val'", self.split)
        _check(self.which in ("best", "last"), "which", "'best' or 'last'", self.which)
        _check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)


@dataclass
class PredictConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    checkpoint: Optional[str] = None  # a run directory (its best checkpoint), or a .npz file
    which: str = "best"               # of a run directory: best or last
    image: Any = None                 # a file, a folder, a glob or a list of them: PNG, JPEG, ..., either polarity
    top: int = 3                      # how many classes to list
    json: bool = False                # print one JSON line instead
    model: Optional[ModelConfig] = None  # the model file, for weights that do not say (safetensors from elsewhere)
    mean: Optional[float] = None      # normalisation, for weights that do not say (default: theirs)
    std: Optional[float] = None
    debug: bool = False

    def __post_init__(self):
        _check(self.checkpoint not in (None, "") and self.image not in (None, "", []), "checkpoint and image",
               "given: checkpoint=PATH image=FILE.png", (self.checkpoint, self.image))
        _check(self.top >= 1, "top", "an integer >= 1", self.top)
        _check(self.which in ("best", "last"), "which", "'best' or 'last'", self.which)


@dataclass
class ExportConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    checkpoint: Optional[str] = None  # a run directory, or a .npz file
    which: str = "best"               # of a run directory: best or last
    format: str = "onnx"              # onnx or safetensors
    out: Optional[str] = None         # the file to write; default: <which>.<format> in the run folder
    verify: str = "random"            # onnx: compare ONNX Runtime with netlab on random images, the test set, or none
    data: SourceDataConfig = field(default_factory=SourceDataConfig)  # where the test set is, for verify=test
    debug: bool = False

    def __post_init__(self):
        _check(self.checkpoint not in (None, ""), "checkpoint", "the model to export: checkpoint=PATH",
               self.checkpoint)
        _check(self.which in ("best", "last"), "which", "'best' or 'last'", self.which)
        _check(self.format in ("onnx", "safetensors"), "format", "'onnx' or 'safetensors'", self.format)
        _check(self.verify in ("random", "test", "none"), "verify", "'random', 'test' or 'none'", self.verify)


@dataclass
class ServeConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    checkpoint: Optional[str] = None  # a run directory (its best checkpoint), a .npz or a .safetensors file
    which: str = "best"               # of a run directory: best or last
    host: str = "127.0.0.1"           # this machine only; 0.0.0.0 opens the page to the network
    port: int = 8000                  # 0: any free port (the address is printed)
    model: Optional[ModelConfig] = None  # the model file, for weights that do not say
    mean: Optional[float] = None
    std: Optional[float] = None
    debug: bool = False

    def __post_init__(self):
        _check(self.checkpoint not in (None, ""), "checkpoint", "the model to serve: checkpoint=RUN_DIR", self.checkpoint)
        _check(self.which in ("best", "last"), "which", "'best' or 'last'", self.which)
        _check(0 <= self.port <= 65535, "port", "from 0 to 65535", self.port)


@dataclass
class BenchConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    model: ModelConfig = MISSING      # conf/bench.yaml picks seed_cnn
    mode: str = "step"                # step: time training steps beside PyTorch; e2e: whole runs of both on MNIST
    batch_sizes: List[int] = field(default_factory=lambda: [64, 256])
    threads: Optional[int] = None     # CPU threads for both libraries; None: every core this process may use
    warmup: int = 3                   # untimed steps per contender
    repeats: int = 7                  # timed repeats, alternating netlab and PyTorch
    steps: int = 10                   # training steps per repeat
    torch: bool = True                # compare with PyTorch when it is installed
    breakdown: bool = True            # per-layer forward/backward times of netlab's step
    smoke: bool = False               # one tiny batch (CI): checks that the bench runs, times nothing useful
    recipe: Optional[str] = None      # e2e mode: a training preset (conf/experiment/NAME.yaml), e.g. fast99
    epochs: Optional[int] = None      # e2e mode: train.epochs; None keeps the recipe's
    runs: int = 3                     # e2e mode: whole runs of each contender, alternating
    train_overrides: List[str] = field(default_factory=list)  # e2e mode: more training overrides
    debug: bool = False

    def __post_init__(self):
        _check(self.mode in ("step", "e2e"), "mode", "'step' or 'e2e'", self.mode)
        _check(len(self.batch_sizes) >= 1 and all(1 <= b <= 65536 for b in self.batch_sizes), "batch_sizes",
               "a list of integers from 1 to 65536", list(self.batch_sizes))
        _check(self.threads is None or self.threads >= 1, "threads", ">= 1", self.threads)
        for key in ("repeats", "steps", "runs"):
            _check(getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        _check(self.epochs is None or self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        _check(self.warmup >= 0, "warmup", "an integer >= 0", self.warmup)


def schema() -> DictConfig:
    """:class:`Config` as Hydra composes onto it: the groups that ``conf/config.yaml``'s
    defaults list fills are left open, so any optimizer's schema can fill ``optimizer``."""
    node = OmegaConf.structured(Config)
    node.optimizer = MISSING
    node.logger = {}  # the defaults list's logger=... choices fill it
    return node


def _comments(cls) -> dict[str, str]:
    """``field -> the comment beside it`` in the dataclasses' source: the schema's comments are
    the keys' descriptions in ``--help``, so each is written once."""
    import inspect
    import re

    out = {}
    for klass in reversed(cls.__mro__[:-1]):
        for line in inspect.getsource(klass).splitlines():
            match = re.match(r"\s+(\w+): [^#]*?#\s*(.+)$", line)
            if match:
                out[match.group(1)] = match.group(2).strip()
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING


def _key_lines(cls, prefix: str, only=None) -> list[str]:
    """``  key (default ...): description`` for every field of ``cls`` (recursively), or of ``only``."""
    import typing

    hints, comments, lines = typing.get_type_hints(cls), _comments(cls), []
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            lines += _key_lines(hints[f.name], f"{prefix}{f.name}.")
            continue
        value = _default(f)
        default = "" if value == MISSING else f" (default {value!r})"
        lines.append(f"  {prefix}{f.name}{default}" + (f": {comments[f.name]}" if f.name in comments else ""))
    return lines


def help_template() -> str:
    """``python -m netlab.train --help``: the groups, every key with its description and default,
    and the composed config."""
    keys = []
    for name, cls in (("backend", BackendConfig), ("data", DataConfig), ("train", TrainConfig),
                      ("model", ModelConfig), ("optimizer", OptimizerConfig)):
        keys += [line for line in _key_lines(cls, f"{name}.") if "model.layers" not in line]
    common = {f.name for f in dataclasses.fields(OptimizerConfig)}
    for name, cls in OPTIMIZER_CONFIGS.items():
        own = [f.name for f in dataclasses.fields(cls) if f.name not in common or f.name == "lr"]
        keys += [line.replace(f"optimizer.{field} (", f"optimizer.{field} (optimizer={name}, ")
                 for line, field in zip(_key_lines(cls, "optimizer.", own), own)]
    keys += _key_lines(Config, "", ("seed", "debug"))
    return "\n".join([
        "netlab-train (python -m netlab.train): train one model; -m sweeps.", "",
        "== Groups (group=option) ==", "$APP_CONFIG_GROUPS", "",
        "== Keys (key=value) ==", *(k.replace("$", "$$") for k in keys), "",  # $ is the template's
        "== This run's config ==", "$CONFIG",
        "Exit status: 0 done, 2 bad input, 130 interrupted, 1 a crash (a bug). See README.md.",
    ])


def register() -> None:
    """Store the schema (``netlab_schema``) and every group option in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="netlab_schema", node=schema())
    for name in BACKENDS:
        cs.store(group="backend", name=name, node=BackendConfig(name=name))
    for name in DATASETS:
        cs.store(group="data", name=name, node=DataConfig(name=name))
    for name, cls in OPTIMIZER_CONFIGS.items():
        cs.store(group="optimizer", name=name, node=cls)
    cs.store(group="train", name="default", node=TrainConfig)
    for name, cls in LOGGER_CONFIGS.items():  # several at once: logger=[csv,mlflow]
        cs.store(group="logger", name=name, node=cls, package=f"logger.{name}")
    cs.store(group="hydra/help", name="netlab", node={"app_name": "netlab-train", "header": "", "footer": "",
                                                       "template": help_template()})
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="serve_schema", node=ServeConfig)
    bench = OmegaConf.structured(BenchConfig)
    cs.store(name="bench_schema", node=bench)


def job_dirname(override_dirname: str) -> str:
    """A sweep job's folder name from Hydra's ``override_dirname``: numbers of more than four
    significant digits (Optuna's 0.0012345678901234567) rounded, anything a shell would need
    quoted replaced by '-', at most 100 characters (the job number before it keeps it unique)."""
    import re

    def short(item: str) -> str:
        key, sep, value = item.partition("=")
        try:
            number = float(value)
            digits = re.sub(r"[^0-9]", "", value.lower().split("e")[0]).strip("0")  # significant ones
            if ("." in value or "e" in value.lower()) and len(digits) > 4 and math.isfinite(number):
                value = f"{number:.4g}"
        except ValueError:
            pass
        return f"{key}{sep}{value}"

    items = [re.sub(r"[^A-Za-z0-9._=+-]", "-", short(item)) for item in override_dirname.split(",") if item]
    name = ""
    for item in items:  # whole items only, up to 100 characters
        if len(name) + len(item) + 1 > 100:
            break
        name = f"{name},{item}" if name else item
    return name or "defaults"


def threads_per_job(jobs) -> int:
    """CPU threads for each of ``jobs`` parallel jobs on this machine (-1: one job per core), so
    that parallel jobs share the cores instead of each running every core's worth of BLAS."""
    from .backend import cpu_cores

    cores = cpu_cores()
    jobs = cores if int(jobs) < 1 else int(jobs)
    return max(1, cores // jobs)


def gpus_per_job(backend_name: str) -> int:
    """GPUs a sweep job asks its launcher for: one on the GPU backend, none otherwise."""
    return 1 if backend_name == "cupy" else 0


def ray_local(value):
    """``value`` when the Ray launcher starts its own local instance; None when RAY_ADDRESS names
    an existing cluster (ray.init refuses resource settings when it connects to one)."""
    import os

    return None if os.environ.get("RAY_ADDRESS") else value


register()
for _name, _resolver in (("netlab_job", job_dirname), ("netlab_threads_per_job", threads_per_job),
                         ("netlab_gpus_per_job", gpus_per_job), ("netlab_ray_local", ray_local)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


def compose(*overrides: str, config_name: str = "config") -> DictConfig:
    """The config that ``python -m netlab.train OVERRIDES`` would run with (Python API)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hydra.errors import HydraException

    overrides = [str(o) for o in overrides]
    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: compose with its search path
            return hydra_compose(config_name, overrides=overrides)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:  # what the command line would refuse
        raise ConfigError(f"cannot compose the config: {exc}") from None


def validate(cfg: DictConfig, schema_cls: type = None) -> Config:
    """Turn the composed config into checked dataclasses; any problem is a :class:`ConfigError`.

    ``schema_cls`` is the dataclass of an app's config (default :class:`Config`, the training
    run's). Keys the schema does not know are refused, with the closest known key, even when
    Hydra let them in (``+train.max_step=2``).
    """
    try:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg)
        if schema_cls is None or schema_cls is Config:
            node = schema()
            # a config read back from YAML (a checkpoint's) is untyped: its optimizer's name picks the schema
            name = OmegaConf.select(cfg, "optimizer.name", default=None)
            if name in OPTIMIZER_CONFIGS:
                node.optimizer = OmegaConf.structured(OPTIMIZER_CONFIGS[name])
            _refuse_unknown_keys(cfg, Config, "")
            checked = OmegaConf.to_object(OmegaConf.merge(node, cfg))
            _check_across(checked)
            return checked
        _refuse_unknown_keys(cfg, schema_cls, "")
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema_cls), cfg))
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ConfigError) else None
        if cause is not None:
            raise cause from None
        raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]} "
                          f"(key {getattr(exc, 'full_key', '?')})") from None


def _refuse_unknown_keys(node, cls, prefix: str) -> None:
    """Every key of ``node`` must be a field of dataclass ``cls`` (recursively); ``hydra`` is Hydra's."""
    import difflib
    import typing

    hints = typing.get_type_hints(cls)
    for key in node.keys():
        if not prefix and key == "hydra":
            continue
        if key not in hints:
            close = difflib.get_close_matches(str(key), list(hints), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known: {', '.join(hints)}"
            raise ConfigError(f"unknown setting {prefix}{key}{hint}")
        child_cls = hints[key]
        if key == "optimizer" and cls is Config:
            name = OmegaConf.select(node, "optimizer.name", default=None)
            child_cls = OPTIMIZER_CONFIGS.get(name, OptimizerConfig)
        if dataclasses.is_dataclass(child_cls) and not OmegaConf.is_missing(node, key) \
                and isinstance(node[key], DictConfig):
            _refuse_unknown_keys(node[key], child_cls, f"{prefix}{key}.")


def _check_across(cfg: Config) -> None:
    """Rules that tie two groups together."""
    for name, settings in cfg.logger.items():
        LOGGERS.lookup(name)
        if isinstance(settings, dict):  # typed nodes were checked while composing; YAML read back was not
            unknown = set(settings) - {f.name for f in dataclasses.fields(LOGGER_CONFIGS[name])}
            _check(not unknown, f"logger.{name}", f"settings among {[f.name for f in dataclasses.fields(LOGGER_CONFIGS[name])]}",
                   sorted(unknown))
    classes = len(DATASETS.lookup(cfg.data.name).classes)
    _check(cfg.model.num_classes == classes, "model.num_classes",
           f"{classes}, the number of classes of {cfg.data.name}", cfg.model.num_classes)
