"""Typed configuration: the one home of every default and of every setting's allowed range.

Each config group's options are dataclasses stored in Hydra's ConfigStore (``backend/numpy``,
``data/mnist``, ``optimizer/adam``, ``train/default``, ...), so the values here are the
defaults of the command line and of the Python API alike (the optimizers, the augmentation
and the loggers read theirs from here); ``conf/`` holds only what is data (model files),
presets that override a few keys (experiments, sweeps) and the defaults list.

Each setting's rule is declared beside it (``setting(default, rule)``) and checked when the
dataclass is built, so :func:`validate` refuses a bad value, with the key and the rule, before
any data is read. This module depends on name tables only (backends, datasets), never on the
code that the names stand for; the registries of that code are checked against the choices
here by the tests.
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
from .data.datasets import DATASETS
from .errors import ConfigError
from .outputs import RUN_FILES, RUN_FOLDERS


def _conf_dir() -> Path:
    """The config folder: inside the package when installed from a wheel (``netlab/conf``), at
    the top of the repository in a clone (``conf/``, which the wheel's ``netlab/conf`` is built from)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    return here / "conf"


CONF_DIR = _conf_dir()

EVAL_BATCH_SIZE = 500  # images per forward pass wherever netlab evaluates (training, evaluate, the PyTorch twin); 1000 held 130 MB more at once for no speed (benchmarks/NOTES.md, round three)
AUTO = "auto"
CONV_CHOICES = (AUTO, "im2col", "fft", "winograd")  # backend.conv: nn.layers.CONV_ALGORITHMS and auto
SCHEDULE_CHOICES = ("constant", "step", "cosine", "onecycle")  # optim.SCHEDULES


# ------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Rule:
    """What a setting may be: ``ok(value)`` and the words that say it (``must be ...``)."""

    ok: Any
    text: str


def between(low=None, high=None, *, low_open=False, high_open=False, integer=False) -> Rule:
    """A finite number (an integer with ``integer``) within the bounds given."""

    def ok(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return False
        if not math.isfinite(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return not (high is not None and (v >= high if high_open else v > high))

    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        text = f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"{kind} {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        text = f"{kind} {'<' if high_open else '<='} {high:g}"
    else:
        text = kind
    return Rule(ok, text)


def count(low: int = 1, high: int | None = None) -> Rule:
    """An integer from ``low`` (to ``high``)."""
    return between(low, high, integer=True)


def one_of(*choices) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(map(str, choices))}")


PROBABILITY = between(0.0, 1.0)
FRACTION = between(0.0, 1.0, low_open=True, high_open=True)  # strictly between 0 and 1
POSITIVE = between(0.0, low_open=True)
NON_NEGATIVE = between(0.0)
DECAY = between(0.0, 1.0, high_open=True)  # a moving-average factor in [0, 1)
SEED = count(0, 2 ** 63 - 1)
BATCH = count(1, 65536)


def setting(default=MISSING, rule: Rule | None = None, *, factory=None):
    """A dataclass field with its default and its rule (None, where the type allows it, is always allowed)."""
    meta = {"rule": rule} if rule else {}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class Checked:
    """Checks every field's rule after the dataclass is built; ``KEY`` is where it sits in the config."""

    KEY = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            rule, value = f.metadata.get("rule"), getattr(self, f.name)
            if rule is None or value is None:
                continue
            many = isinstance(value, (list, tuple))  # a list's rule is each item's
            if not all(rule.ok(v) for v in (value if many else [value])):
                self.refuse(f.name, f"{rule.text}{' (each)' if many else ''}", value)
        self.check()

    def check(self) -> None:
        """Rules that tie two of the dataclass's fields together."""

    def refuse(self, name: str, rule: str, value) -> None:
        key = f"{self.KEY}.{name}" if self.KEY else name
        shown = list(value) if isinstance(value, (list, tuple)) else value
        raise ConfigError(f"invalid setting: {key} must be {rule}, got {shown!r}")


# ------------------------------------------------------------------------------ schemas
@dataclass
class BackendConfig(Checked):
    KEY = "backend"
    name: str = setting("numpy", one_of(*BACKENDS))   # numpy (CPU), cupy (CUDA GPU), torch or array_api_strict
    threads: Optional[int] = setting(None, count(1, 1024))  # BLAS and FFT threads on the CPU; None keeps the library's default
    conv: str = setting(AUTO, one_of(*CONV_CHOICES))  # how convolutions compute: im2col, fft (stride 1), winograd (3x3, stride 1) or auto (per layer)


@dataclass
class AugmentConfig(Checked):
    """The report's four augmentations; the defaults are the default recipe's (rotation and
    translation; blotches and noise off, see study_augment). ``data.augment.Augment`` reads them."""

    KEY = "data.augment"
    rotate_p: float = setting(0.5, PROBABILITY)  # probability that an image is rotated
    degrees: float = setting(10.0, between(0.0, 180.0))  # angle drawn uniformly from [-degrees, degrees]
    translate_p: float = setting(0.5, PROBABILITY)  # probability that an image is shifted
    pixels: float = setting(2.0, between(0.0, 64.0))  # shift drawn uniformly from [-pixels, pixels] on each axis
    blotch_p: float = setting(0.0, PROBABILITY)  # probability that a rectangle of an image is erased
    blotch_min: int = setting(3, count(1, 256))  # side of the erased rectangle, in pixels
    blotch_max: int = setting(7, count(1, 256))  # (the side is drawn from blotch_min..blotch_max)
    noise_p: float = setting(0.0, PROBABILITY)  # probability that Gaussian noise is added to an image
    noise_std: float = setting(0.1, between(0.0, 1.0))  # its standard deviation (pixels are in [0, 1])
    enabled: bool = True  # augment the training images (never validation or test)
    mode: str = setting("online", one_of("online", "offline"))  # online: fresh transforms every batch; offline: `copies` per image, made once
    copies: int = setting(2, count(1, 20))     # offline mode: augmented copies of each training image

    def check(self):
        if self.blotch_max < self.blotch_min:
            self.refuse("blotch_max", f">= data.augment.blotch_min ({self.blotch_min})", self.blotch_max)


@dataclass
class DataConfig(Checked):
    KEY = "data"
    name: str = setting("mnist", one_of(*DATASETS))  # mnist, fashion_mnist, kmnist, emnist (balanced), cifar10, or folder (your images)
    root: Optional[str] = None  # folder with the dataset's files (folder: one subfolder per class); None: $NETLAB_DATA/<name> or the cache
    download: bool = True       # fetch missing files (into root, or netlab's cache)
    verify: bool = True         # compare with the official files' checksums
    val_fraction: float = setting(0.1, FRACTION)  # training images held out for validation, before any augmentation
    normalize: bool = True      # zero mean, unit variance from training statistics; off: pixels in [0, 1]
    shuffle: bool = True        # a new order of the training images every epoch
    limit: Optional[int] = setting(None, count(2))  # keep only the first images of each file (smoke runs)
    test_fraction: float = setting(0.1, FRACTION)  # folder: images held out for testing when it has no test/ subfolder
    classes: Optional[List[str]] = None  # folder: its class names (the subfolders), recorded when a run starts
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self):
        if self.classes is not None:
            names = list(self.classes)
            if DATASETS.lookup(self.name).classes:
                self.refuse("classes", f"unset for {self.name}, whose classes are fixed (it is for data=folder)",
                            names)
            if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
                self.refuse("classes", "a list of distinct, non-empty class names", names)


@dataclass
class ModelConfig(Checked):
    """A model file (``conf/model/*.yaml``): its layers are data, so there is no default model here."""

    KEY = "model"
    name: str = MISSING         # the model file's name (model=seed_cnn, lenet5, mlp, bn_cnn, or yours)
    dropout: float = setting(0.0, between(0.0, 1.0, high_open=True))  # the p of every `dropout` layer that gives none
    input_shape: List[int] = field(default_factory=lambda: [1, 28, 28])  # channels, height, width
    num_classes: int = setting(10, count(1, 100_000))  # scores the last layer gives; must equal the dataset's classes
    layers: List[Any] = MISSING  # the model file's list of layers (conf/model/*.yaml)


@dataclass
class ScheduleConfig(Checked):
    KEY = "optimizer.schedule"
    name: str = setting("onecycle", one_of(*SCHEDULE_CHOICES))  # warm up to lr over pct_start of the steps, then anneal; constant: lr stays
    step_size: int = setting(1000, count(1))  # step: multiply lr by gamma every step_size steps
    gamma: float = setting(0.1, between(0.0, 1.0, low_open=True))  # step: the factor
    warmup_steps: int = setting(0, count(0))  # cosine: linear warm-up, then decay to min_lr
    min_lr: float = setting(0.0, NON_NEGATIVE)  # cosine: the lr it ends at
    pct_start: float = setting(0.3, FRACTION)  # onecycle: fraction of the steps spent rising to lr
    div_factor: float = setting(25.0, between(1.0))  # onecycle: it starts at lr / div_factor
    final_div_factor: float = setting(1e4, between(1.0))  # onecycle: it ends at lr / (div_factor * final_div_factor)


@dataclass
class OptimizerConfig(Checked):
    """What every optimizer has; each optimizer's own schema below adds its fields and defaults."""

    KEY = "optimizer"
    name: str = MISSING        # chosen with optimizer=sgd, momentum, adam, adagrad or rmsprop
    lr: float = setting(MISSING, POSITIVE)  # the learning rate; with the one-cycle schedule, its peak
    weight_decay: float = setting(0.0, NON_NEGATIVE)  # L2: weight_decay * p is added to the gradient
    clip_norm: Optional[float] = setting(None, POSITIVE)  # scale the gradients down to this global norm when above it
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def check(self):
        if self.name not in OPTIMIZER_CONFIGS:
            self.refuse("name", f"one of {', '.join(OPTIMIZER_CONFIGS)}", self.name)


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = setting(0.05, POSITIVE)
    momentum: float = setting(0.0, DECAY)  # heavy-ball momentum; the first buffer is the gradient
    nesterov: bool = False     # Nesterov momentum (needs momentum > 0)

    def check(self):
        super().check()
        if self.nesterov and self.momentum <= 0:
            self.refuse("momentum", "> 0 with nesterov", self.momentum)


@dataclass
class MomentumConfig(SGDConfig):
    """SGD with (heavy-ball) momentum."""

    name: str = "momentum"
    lr: float = setting(0.01, POSITIVE)
    momentum: float = setting(0.9, DECAY)


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = setting(0.003, POSITIVE)
    betas: List[float] = setting(rule=DECAY, factory=lambda: [0.9, 0.999])  # decay of the two moments
    eps: float = setting(1e-8, POSITIVE)  # added to the root of the second moment

    def check(self):
        super().check()
        if len(self.betas) != 2:
            self.refuse("betas", "two numbers in [0, 1)", self.betas)


@dataclass
class AdamWConfig(AdamConfig):
    """Adam with decoupled weight decay: each step multiplies the weights by 1 - lr * weight_decay."""

    name: str = "adamw"
    weight_decay: float = setting(0.01, NON_NEGATIVE)  # decoupled: shrinks the weights, not added to the gradient


@dataclass
class AdagradConfig(OptimizerConfig):
    name: str = "adagrad"
    lr: float = setting(0.01, POSITIVE)
    eps: float = setting(1e-10, POSITIVE)  # added outside the square root of the summed squares


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    lr: float = setting(0.001, POSITIVE)
    alpha: float = setting(0.99, DECAY)  # decay of the squared-gradient average
    eps: float = setting(1e-8, POSITIVE)  # added outside the square root, as PyTorch
    momentum: float = setting(0.0, DECAY)  # momentum on the scaled step


# optimizer name -> its schema (optim.OPTIMIZERS has a class for each)
OPTIMIZER_CONFIGS = {c.name: c for c in (SGDConfig, MomentumConfig, AdamConfig, AdamWConfig, AdagradConfig,
                                          RMSpropConfig)}


@dataclass
class TrainConfig(Checked):
    KEY = "train"
    epochs: int = setting(2, count(1, 100_000))  # passes over the training images
    batch_size: int = setting(64, BATCH)  # images per step
    max_steps: Optional[int] = setting(None, count(1))  # stop after this many steps, if that comes before the last epoch
    eval_every: int = setting(250, count(1))  # steps between train/val/test evaluations (and at each epoch's end)
    eval_batch_size: int = setting(EVAL_BATCH_SIZE, BATCH)  # images per forward pass when evaluating
    checkpoint_every: int = setting(250, count(1))  # steps between checkpoints/last.npz
    resume: Optional[str] = None  # a run directory or a checkpoint .npz to continue from; latest; auto: this run's own folder if it holds a checkpoint, else start
    init_from: Optional[str] = None  # start from these weights (a safetensors file, a run's best or a .npz)
    patience: int = setting(0, count(0))  # stop after this many evaluations without a better val accuracy; 0: off
    label_smoothing: float = setting(0.0, between(0.0, 1.0, high_open=True))  # training targets: 1 - s + s/K and s/K
    progress: bool = True         # a progress bar on a terminal (plain log lines otherwise)

    def check(self):
        if self.resume and self.init_from:
            self.refuse("init_from", "unset when resuming (train.resume)", self.init_from)


def _plain_name(value) -> bool:
    """A file or folder name inside the run folder: no path, nothing the run keeps for itself."""
    own = set(RUN_FOLDERS + RUN_FILES) - {"metrics.csv"}  # metrics.csv is the csv logger's own default
    return (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\\" not in value
            and value not in own)


PLAIN_NAME = Rule(_plain_name, "a plain name inside the run folder (no '/', not one of the run's own files)")


@dataclass
class CsvConfig(Checked):
    KEY = "logger.csv"
    file: str = setting("metrics.csv", PLAIN_NAME)  # in the run folder; netlab.summarize reads metrics.csv


@dataclass
class TensorBoardConfig(Checked):
    KEY = "logger.tensorboard"
    dir: str = setting("tensorboard", PLAIN_NAME)  # event files, in the run folder: tensorboard --logdir RUN/tensorboard


@dataclass
class MLflowConfig:
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else an SQLite store, mlflow.db where you run
    experiment: str = "netlab"          # the MLflow experiment that runs (and every job of a sweep) go into


# logger name -> its settings (loggers.LOGGERS has a class for each)
LOGGER_CONFIGS = {"csv": CsvConfig, "tensorboard": TensorBoardConfig, "mlflow": MLflowConfig}


@dataclass
class Config(Checked):
    backend: BackendConfig = field(default_factory=BackendConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = MISSING  # conf/config.yaml picks seed_cnn
    optimizer: OptimizerConfig = field(default_factory=AdamConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: Dict[str, Any] = field(default_factory=lambda: {"csv": CsvConfig()})  # logger=csv|tensorboard|mlflow, or a list
    seed: int = setting(0, SEED)  # initial weights, the validation split, shuffling, dropout and augmentation
    debug: bool = False  # show tracebacks for user errors

    def check(self):
        for name, settings in self.logger.items():
            if name not in LOGGER_CONFIGS:
                self.refuse("logger", f"among {', '.join(LOGGER_CONFIGS)}", name)
            known = [f.name for f in dataclasses.fields(LOGGER_CONFIGS[name])]
            if isinstance(settings, dict) and set(settings) - set(known):  # YAML read back is untyped
                self.refuse(f"logger.{name}", f"settings among {known}", sorted(set(settings) - set(known)))
        classes = len(DATASETS.lookup(self.data.name).classes)
        if classes and self.model.num_classes != classes:  # a folder's classes are its subfolders: counted on loading
            self.refuse("model.num_classes", f"{classes}, the number of classes of {self.data.name}",
                        self.model.num_classes)
        side = min(self.model.input_shape[-2:]) if len(self.model.input_shape) >= 2 else None
        aug = self.data.augment
        if side and aug.enabled:  # sizes past the image would be clipped silently
            if aug.blotch_p and aug.blotch_max > side:
                self.refuse("data.augment.blotch_max", f"at most the image's side ({side})", aug.blotch_max)
            if aug.translate_p and aug.pixels >= side:
                self.refuse("data.augment.pixels", f"less than the image's side ({side})", aug.pixels)


@dataclass
class RangeTestConfig(Checked):
    KEY = "lr_find"
    start: float = setting(1e-6, POSITIVE)  # the first lr of the sweep
    end: float = setting(1.0, POSITIVE)     # the last (the sweep stops earlier when the loss blows up)
    steps: int = setting(200, count(10, 100_000))  # training steps, the lr growing exponentially between them
    out: Optional[str] = None  # folder for lr_find.png and lr_find.json; None: outputs/lr_find/DATE/TIME

    def check(self):
        if self.end <= self.start:
            self.refuse("end", f"> lr_find.start ({self.start:g})", self.end)


@dataclass
class LrFindConfig(Config):
    """A training run's settings (model, data, optimizer, batch) and the range test's own."""

    lr_find: RangeTestConfig = field(default_factory=RangeTestConfig)


@dataclass
class SourceDataConfig:
    """Where evaluate and export read data: the user's command line and defaults decide, never
    the checkpoint (a file from outside is data, not instructions)."""

    root: Optional[str] = None  # folder with the dataset's files; None: $NETLAB_DATA/<name> or the cache
    download: bool = True       # fetch missing files into that folder (official checksums checked)
    verify: bool = True


@dataclass
class SavedModelConfig(Checked):
    """What every command that reads a trained model shares (evaluate, predict, export, serve)."""

    backend: BackendConfig = field(default_factory=BackendConfig)
    checkpoint: Optional[str] = None  # a run folder, a .npz or .safetensors file
    which: str = setting("best", one_of("best", "last"))  # of a run folder: best (chosen on validation) or last
    model: Optional[ModelConfig] = None  # the model file, for weights that do not say (safetensors from elsewhere)
    mean: Optional[float] = setting(None, between())  # normalisation, for weights that do not say (default: theirs)
    std: Optional[float] = setting(None, POSITIVE)
    debug: bool = False  # show tracebacks for user errors

    def check(self):
        if self.checkpoint in (None, ""):
            self.refuse("checkpoint", "the trained model: checkpoint=PATH (a run folder or a .npz file)",
                        self.checkpoint)


@dataclass
class EvaluateConfig(SavedModelConfig):
    split: str = setting("test", one_of("test", "val"))  # test or val
    batch_size: int = setting(EVAL_BATCH_SIZE, BATCH)  # images per forward pass
    out: Optional[str] = None  # folder for the outputs; default: the run folder, or beside the .npz
    data: SourceDataConfig = field(default_factory=SourceDataConfig)


@dataclass
class PredictConfig(SavedModelConfig):
    image: Any = None                 # a file, a folder, a glob or a list of them: PNG, JPEG, ..., either polarity
    top: int = setting(3, count(1, 100_000))  # how many classes to list
    json: bool = False                # print one JSON line instead

    def check(self):
        super().check()
        if self.image in (None, "", []):
            self.refuse("image", "given: checkpoint=PATH image=FILE.png", self.image)


@dataclass
class ExportConfig(SavedModelConfig):
    format: str = setting("onnx", one_of("onnx", "safetensors"))  # onnx or safetensors
    out: Optional[str] = None         # the file to write; default: <which>.<format> in the run folder
    verify: str = setting("random", one_of("random", "test", "none"))  # onnx: compare ONNX Runtime with netlab on random images, the test set, or none
    data: SourceDataConfig = field(default_factory=SourceDataConfig)  # where the test set is, for verify=test


@dataclass
class ServeConfig(SavedModelConfig):
    host: str = "127.0.0.1"           # this machine only; 0.0.0.0 opens the page to the network
    port: int = setting(8000, count(0, 65535))  # 0: any free port (the address is printed)
    allowed_hosts: Optional[List[str]] = None  # Host headers answered; None: loopback names (any, with host=0.0.0.0)


@dataclass
class BenchConfig(Checked):
    backend: BackendConfig = field(default_factory=BackendConfig)
    model: ModelConfig = MISSING      # conf/bench.yaml picks seed_cnn
    mode: str = setting("step", one_of("step", "e2e", "roofline", "infer"))  # step: training steps beside PyTorch; e2e: whole runs of both on MNIST; roofline: each layer against this machine's limits; infer: evaluating the test images, beside PyTorch
    batch_sizes: List[int] = setting(rule=BATCH, factory=lambda: [64, 256])  # batch sizes to time
    threads: Optional[int] = setting(None, count(1, 1024))  # CPU threads for both libraries; None: every core this process may use
    warmup: int = setting(3, count(0))  # untimed steps per contender
    repeats: int = setting(7, count(1))  # timed repeats, alternating netlab and PyTorch
    steps: int = setting(10, count(1))  # training steps per repeat
    torch: bool = True                # compare with PyTorch when it is installed
    breakdown: bool = True            # per-layer forward/backward times of netlab's step
    smoke: bool = False               # one tiny batch (CI): checks that the bench runs, times nothing useful
    recipe: Optional[str] = None      # e2e mode: a training preset (conf/experiment/NAME.yaml), e.g. fast99
    epochs: Optional[int] = setting(None, count(1))  # e2e mode: train.epochs; None keeps the recipe's
    runs: int = setting(3, count(1))  # e2e mode: whole runs of each contender, alternating
    train_overrides: List[str] = field(default_factory=list)  # e2e mode: more training overrides; infer mode: data.* only
    out: Optional[str] = None         # folder for bench.json (and e2e mode's runs); None: outputs/bench/DATE/TIME
    debug: bool = False

    # settings that only some modes read: given to another mode they would be ignored in silence
    MODE_SETTINGS = {"recipe": ("e2e",), "epochs": ("e2e",), "train_overrides": ("e2e", "infer")}

    def check(self):
        if not self.batch_sizes:
            self.refuse("batch_sizes", "a list of at least one batch size", self.batch_sizes)
        for name, modes in self.MODE_SETTINGS.items():
            if getattr(self, name) not in (None, []) and self.mode not in modes:
                raise ConfigError(f"invalid setting: {name} is read in mode={' and mode='.join(modes)} only, not "
                                  f"in mode={self.mode}; add mode={modes[0]}, or leave {name} out")


# ---------------------------------------------------------------------- composing and checking
def flatten(tree, prefix: str = "") -> dict:
    """``{"optimizer.lr": 0.003, ...}``: a config (dataclasses or nested dicts) as flat keys, lists
    as JSON text (what trackers take as parameters, and what resume compares)."""
    import json

    if dataclasses.is_dataclass(tree):
        tree = dataclasses.asdict(tree)
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) or dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


def schema(cls: type = None) -> DictConfig:
    """:class:`Config` (or a subclass) as Hydra composes onto it: the groups that the defaults
    list fills are left open, so any optimizer's schema can fill ``optimizer``."""
    node = OmegaConf.structured(cls or Config)
    node.optimizer = MISSING
    node.logger = {}  # the defaults list's logger=... choices fill it
    return node


# the command schemas stored in Hydra's ConfigStore, by the name their conf/*.yaml picks
COMMANDS = ("train", "evaluate", "predict", "export", "serve", "bench", "lr_find")  # the Hydra apps (netlab.cli)
COMMAND_SCHEMAS = {"evaluate_schema": EvaluateConfig, "predict_schema": PredictConfig,
                   "export_schema": ExportConfig, "serve_schema": ServeConfig, "bench_schema": BenchConfig}


# A training run's log (conf/config.yaml picks it): short time stamps, the run's log file beside
# its outputs, and the chatter of third-party libraries (MLflow's store, HTTP) kept to warnings.
JOB_LOGGING = {
    "version": 1,
    "formatters": {"netlab": {"()": "netlab.console.LogFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "netlab", "stream": "ext://sys.stdout"},
        "file": {"class": "logging.FileHandler", "formatter": "netlab",
                 "filename": "${hydra.runtime.output_dir}/${hydra.job.name}.log"},
    },
    "root": {"level": "INFO", "handlers": ["console", "file"]},
    "loggers": {name: {"level": "WARNING"} for name in ("mlflow", "alembic", "urllib3", "matplotlib", "PIL")},
    "disable_existing_loggers": False,
}


# The other commands' log: to stderr only (their answers, such as export's JSON report, are stdout's).
CONSOLE_LOGGING = {
    "version": 1,
    "formatters": {"netlab": {"()": "netlab.console.LogFormatter", "stamp": False}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "netlab", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": JOB_LOGGING["loggers"],
    "disable_existing_loggers": False,
}


def register() -> None:
    """Store the schema (``netlab_schema``), every group option and the commands' schemas in
    Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="netlab_schema", node=schema())
    cs.store(name="lr_find_schema", node=schema(LrFindConfig))
    for name in BACKENDS:
        cs.store(group="backend", name=name, node=BackendConfig(name=name))
    for name in DATASETS:
        cs.store(group="data", name=name, node=DataConfig(name=name))
    for name, cls in OPTIMIZER_CONFIGS.items():
        cs.store(group="optimizer", name=name, node=cls)
    cs.store(group="train", name="default", node=TrainConfig)
    for name, cls in LOGGER_CONFIGS.items():  # several at once: logger=[csv,mlflow]
        cs.store(group="logger", name=name, node=cls, package=f"logger.{name}")
    for name, cls in COMMAND_SCHEMAS.items():
        cs.store(name=name, node=cls)
    cs.store(group="hydra/job_logging", name="netlab", node=JOB_LOGGING)
    cs.store(group="hydra/job_logging", name="netlab_stderr", node=CONSOLE_LOGGING)
    for command in COMMANDS:  # the --help each command's conf/*.yaml picks; netlab.cli.help writes the text
        cs.store(group="hydra/help", name=f"netlab_{command}", node={"app_name": f"netlab-{command}"})


register()


def compose(*overrides: str, config_name: str = "config", with_hydra: bool = False) -> DictConfig:
    """The config that ``python -m netlab.train OVERRIDES`` would run with (Python API);
    ``with_hydra`` keeps Hydra's own node (``hydra.mode``, the sweep's settings)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from . import sweeps  # noqa: F401  (its resolvers appear in the sweep presets)

    overrides = [str(o) for o in overrides]
    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: compose with its search path
            return hydra_compose(config_name, overrides=overrides, return_hydra_config=with_hydra)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as exc:  # what the command line would refuse
        raise ConfigError(f"cannot compose the config: {exc}") from None


def validate(cfg, schema_cls: type = None):
    """Turn the composed config into checked dataclasses; any problem is a :class:`ConfigError`.

    ``schema_cls`` is the dataclass of an app's config (default :class:`Config`, the training
    run's). Keys the schema does not know are refused, with the closest known key, even when
    Hydra let them in (``+train.max_step=2``).
    """
    try:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(cfg)
        schema_cls = schema_cls or Config
        if issubclass(schema_cls, Config):
            node = schema(schema_cls)
            # a config read back from YAML (a checkpoint's) is untyped: its optimizer's name picks the schema
            name = OmegaConf.select(cfg, "optimizer.name", default=None)
            if name in OPTIMIZER_CONFIGS:
                node.optimizer = OmegaConf.structured(OPTIMIZER_CONFIGS[name])
            _refuse_unknown_keys(cfg, schema_cls, "")
            return OmegaConf.to_object(OmegaConf.merge(node, cfg))
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

    hints = {k: v for k, v in typing.get_type_hints(cls).items() if k != "KEY"}
    for key in node.keys():
        if not prefix and key == "hydra":
            continue
        if key not in hints:
            close = difflib.get_close_matches(str(key), list(hints), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known: {', '.join(hints)}"
            raise ConfigError(f"unknown setting {prefix}{key}{hint}")
        child_cls = hints[key]
        if key == "optimizer" and issubclass(cls, Config):
            name = OmegaConf.select(node, "optimizer.name", default=None)
            child_cls = OPTIMIZER_CONFIGS.get(name, OptimizerConfig)
        child_cls = _unwrap_optional(child_cls)
        if dataclasses.is_dataclass(child_cls) and not OmegaConf.is_missing(node, key) \
                and isinstance(node[key], DictConfig):
            _refuse_unknown_keys(node[key], child_cls, f"{prefix}{key}.")


def schema_keys(cls, prefix: str = "") -> list[str]:
    """Every dotted key of dataclass ``cls`` (recursively); for :class:`Config`, the keys of every
    optimizer's schema under ``optimizer.``."""
    import typing

    keys = []
    for f in dataclasses.fields(cls):
        hint = _unwrap_optional(typing.get_type_hints(cls)[f.name])
        if issubclass(cls, Config) and f.name == "optimizer":
            subs = {k for c in OPTIMIZER_CONFIGS.values() for k in schema_keys(c, "optimizer.")}
            keys += sorted(subs)
        elif dataclasses.is_dataclass(hint):
            keys += schema_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unwrap_optional(hint):
    """``X`` of ``Optional[X]``; anything else as it is."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
