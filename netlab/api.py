"""netlab from Python (a notebook, a script): train with a few overrides, load a trained model,
predict on arrays, summarise a model.

    import netlab
    run = netlab.fit(model="lenet5", train__epochs=1)     # as: python -m netlab.train model=lenet5 train.epochs=1
    run.results["test_accuracy"]
    model = netlab.load("latest")                         # or a run folder, a .npz or .safetensors file
    model.predict(images)                                 # images: (N, 28, 28) in [0, 1], or uint8 as MNIST
    print(model.summary())

Everything goes through the command line's code: the same schema and checks, the same run
folders (``outputs/DATE/TIME`` where you are, or ``out=``), the same files in them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

import yaml

from . import backend, losses, models, resume, saved
from .config import compose, validate
from .console import LogFormatter
from .data import normalize
from .outputs import RunFolder, write_text
from .errors import ConfigError
from .inference import Predictor


def overrides_of(args: tuple, settings: dict) -> list[str]:
    """Command-line overrides from positional ones (``"train.epochs=1"``) and keywords, where a
    double underscore stands for a dot (``train__epochs=1``) and a mapping for a group's keys
    (``train={"epochs": 1}``)."""
    out = [str(a) for a in args]

    def add(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{key}.{k}", v)
        elif isinstance(value, (list, tuple)):
            out.append(f"{key}=[{','.join(map(_text, value))}]")
        else:
            out.append(f"{key}={_text(value)}")

    for key, value in settings.items():
        add(key.replace("__", "."), value)
    return out


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (int, float)) else repr(str(value))


@dataclass
class Run:
    """A finished training run: its folder, its results (``results.json``) and its best model."""

    path: Path
    results: dict

    @property
    def model(self) -> "Model":
        return load(self.path)

    def __repr__(self):
        r = self.results
        return (f"Run({str(self.path)!r}: {r['model']} on {r['dataset']}, test accuracy "
                f"{100 * r['test_accuracy']:.2f}% after {r['steps']} steps)")


def fit(*overrides: str, out=None, callbacks: list | None = None, **settings) -> Run:
    """Train one model as ``python -m netlab.train OVERRIDES`` would and return the :class:`Run`;
    its log lines (and, in a notebook, its progress bar) show as it trains. ``out`` is the run
    folder (default ``outputs/DATE/TIME`` under the current folder); ``callbacks`` replaces the
    default list (``netlab.training.default_callbacks``)."""
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from .training import Trainer

    given = overrides_of(overrides, settings)
    composed = compose(*given, with_hydra=True)
    if OmegaConf.select(composed, "hydra.mode") == RunMode.MULTIRUN or OmegaConf.select(composed,
                                                                                       "hydra.sweeper.params"):
        raise ConfigError(f"{' '.join(given)} is a sweep of several runs; run sweeps from the command line "
                          f"(python -m netlab.train -m ...)")
    spec = OmegaConf.select(composed, "train.resume")
    if spec:  # train.resume=RUN alone continues RUN with its own settings, in its folder
        folder = resume.run_folder(spec)
        composed = compose(*resume.continued_overrides(folder, given))
        out = out or folder
    cfg = validate(OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"]))
    out = Path(out) if out else Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S.%f")
    RunFolder.claim(out, resume.run_folder(spec) if spec else None)  # refused here, nothing written
    if not spec:  # the record the command line keeps too, so that train.resume=RUN alone continues it
        write_text(out / ".hydra" / "overrides.yaml", yaml.safe_dump(given, default_flow_style=False))
    with _visible_log():
        trainer = Trainer(cfg, out, callbacks)
        if spec:
            trainer.load(spec)
        results = trainer.fit()
    return Run(out, results)


class Model:
    """A trained model from Python: predictions on arrays, its summary, its settings."""

    def __init__(self, trained: saved.SavedModel):
        self.trained = trained
        self._predictor = None

    @property
    def classes(self) -> list[str]:
        return self.trained.classes

    @property
    def config(self):
        return self.trained.config

    @property
    def path(self) -> Path:
        return self.trained.path

    def predict_proba(self, images, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (N, K) of images (N, H, W) or (N, C, H, W) prepared as the training
        images were (MNIST: a light digit on black): floats in [0, 1], or uint8 in 0..255."""
        x = np.asarray(images)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        if x.ndim == len(self.trained.input_shape) and self.trained.input_shape[0] == 1:
            x = x[:, None]  # one channel may be left out
        if x.ndim != 4 or tuple(x.shape[1:]) != self.trained.input_shape:
            raise ConfigError(f"images of shape {x.shape}; this model takes (N, *{self.trained.input_shape}) "
                              f"or, for one channel, (N, H, W)")
        if not np.all(np.isfinite(x)):
            raise ConfigError("the images hold NaN or infinite values")
        out = []
        t = self.trained
        for lo in range(0, len(x), batch_size):
            xb = normalize(backend.from_numpy(t.xp, x[lo:lo + batch_size].astype(np.float32)), t.mean, t.std)
            out.append(backend.to_numpy(losses.softmax(t.model.forward(xb))))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, images, batch_size: int = 1000) -> np.ndarray:
        """The class index (N,) of each image (see :meth:`predict_proba`)."""
        return self.predict_proba(images, batch_size).argmax(axis=1)

    def predict_file(self, path, top: int = 3) -> dict:
        """The answer for an image file (a photo or a drawing, any size), prepared as ``predict`` does."""
        if self._predictor is None:
            self._predictor = Predictor(self.trained)
        return self._predictor.answer(self._predictor.prepare(path), top)

    def summary(self) -> models.Summary:
        """Each layer's type, settings, output shape and parameters (``print(model.summary())``)."""
        return models.summary(self.trained.model, self.trained.input_shape)

    def __repr__(self):
        return f"Model({str(self.path)!r}: {self.config.model.name}, {self.trained.model.num_parameters():,} parameters)"


def load(path="latest", which: str = "best", backend_name: str = "numpy", **kwargs) -> Model:
    """The trained model at ``path``: a run folder (its ``which`` checkpoint), a ``.npz`` or
    ``.safetensors`` file, or ``latest`` (the newest finished run under ``outputs/``). Keywords
    as :func:`netlab.saved.load` (``model``, ``mean``, ``std``, ``conv``)."""
    return Model(saved.load(path, backend.namespace(backend_name), which, **kwargs))


@contextlib.contextmanager
def _visible_log():
    """netlab's INFO lines on standard output while a run trains from Python, unless the
    program already says where log records go (a notebook or script has no handler)."""
    logger = logging.getLogger("netlab")
    if logging.getLogger().handlers or logger.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LogFormatter(stamp=False))
    level = logger.level
    logger.setLevel(logging.INFO)  # (setLevel, not the attribute: it clears logging's cache of levels)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
