"""Where a run's metrics go: metrics.csv (``logger=csv``, the default), TensorBoard event files
(``logger=tensorboard``) and MLflow (``logger=mlflow``); several at once with
``logger=[csv,tensorboard]``. Each logger gets the run's config as parameters when the run
starts, every metric at every evaluation, and the curves, results and best checkpoint as
artifacts at the end. Trackers are optional installs (``pip install -e '.[trackers]'``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Optional

from .errors import BackendError
from .metrics import COLUMNS
from .registry import Registry

LOGGERS = Registry("logger")


@dataclass
class CsvConfig:
    file: str = "metrics.csv"   # in the run folder; netlab.summarize reads it


@dataclass
class TensorBoardConfig:
    dir: str = "tensorboard"    # event files, in the run folder: tensorboard --logdir RUN/tensorboard


@dataclass
class MLflowConfig:
    tracking_uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else an SQLite store, mlflow.db where you run
    experiment: str = "netlab"          # the MLflow experiment that runs (and every job of a sweep) go into


def flatten(tree, prefix: str = "") -> dict:
    """``{"optimizer.lr": 0.003, ...}`` from nested dicts and dataclasses (lists as text)."""
    if is_dataclass(tree):
        tree = asdict(tree)
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) or is_dataclass(value):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


class Logger:
    """What the training loop tells a logger; each method may do nothing."""

    def __init__(self, settings, out: Path):
        self.settings, self.out = settings, Path(out)

    def start(self, params: dict, history: list[dict]) -> None:
        """The run begins (or continues, with the metrics rows it already has)."""

    def log(self, rows: list[dict]) -> None:
        """The rows of one evaluation point (one per split): step, epoch, split, loss, accuracy, lr, elapsed_s."""

    def finish(self, results: dict, artifacts: list[Path]) -> None:
        """The run finished: its results and its files worth keeping."""

    def close(self, failed: bool) -> None:
        """Always called last, also when the run fails or is interrupted."""


@LOGGERS.register("csv")
class CsvLogger(Logger):
    """metrics.csv: one row per split and evaluation point, appended as they come (a resumed run
    rewrites the history its checkpoint holds)."""

    def start(self, params, history):
        self._file = open(self.out / self.settings.file, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._writer.writeheader()
        self.log(history)

    def log(self, rows):
        self._writer.writerows(rows)
        self._file.flush()

    def close(self, failed):
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard event files through tensorboardX: scalars ``<split>/loss``, ``<split>/accuracy``
    and ``lr`` by step, the config and results as text, the curves as an image."""

    def start(self, params, history):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise BackendError("logger=tensorboard needs tensorboardX: pip install -e '.[trackers]'") from None
        self.writer = SummaryWriter(logdir=str(self.out / self.settings.dir))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()), 0)

    def log(self, rows):
        for r in rows:
            self.writer.add_scalar(f"{r['split']}/loss", r["loss"], r["step"])
            self.writer.add_scalar(f"{r['split']}/accuracy", r["accuracy"], r["step"])
        if rows:
            self.writer.add_scalar("lr", rows[0]["lr"], rows[0]["step"])
        self.writer.flush()

    def finish(self, results, artifacts):
        import numpy as np
        from PIL import Image

        self.writer.add_text("results", "    " + json.dumps(results, indent=2).replace("\n", "\n    "),
                             results.get("steps", 0))
        for path in artifacts:
            if path.suffix == ".png" and path.exists():
                with Image.open(path) as img:
                    self.writer.add_image(path.stem, np.asarray(img.convert("RGB")), results.get("steps", 0),
                                          dataformats="HWC")

    def close(self, failed):
        if getattr(self, "writer", None) is not None:
            self.writer.close()


@LOGGERS.register("mlflow")
class MLflowLogger(Logger):
    """One MLflow run per training run (so one per sweep job): the config as parameters, every
    metric at every evaluation step, the curves, results and best checkpoint as artifacts."""

    def start(self, params, history):
        try:
            import mlflow
        except ImportError:
            raise BackendError("logger=mlflow needs mlflow: pip install -e '.[trackers]'") from None
        self.mlflow = mlflow
        uri = self.settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.settings.experiment)
        self.run = mlflow.start_run(run_name=self.out.name)
        # MLflow keeps parameter values up to 6000 characters; a model file's layers can be longer
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log(self, rows):
        if rows:
            metrics = {f"{r['split']}_{m}": r[m] for r in rows for m in ("loss", "accuracy")}
            self.mlflow.log_metrics({**metrics, "lr": rows[0]["lr"]}, step=rows[0]["step"])

    def finish(self, results, artifacts):
        logged = {f"{split}_{m}" for split in ("train", "val", "test") for m in ("loss", "accuracy")}
        self.mlflow.log_metrics({k: v for k, v in results.items() if isinstance(v, (int, float)) and v is not None
                                 and not isinstance(v, bool) and k not in logged and k.endswith(("accuracy", "_s"))},
                                step=results.get("steps", 0))
        for path in artifacts:
            if path.exists():
                self.mlflow.log_artifact(str(path))

    def close(self, failed):
        if getattr(self, "run", None) is not None:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")
            self.run = None


LOGGER_CONFIGS = {"csv": CsvConfig, "tensorboard": TensorBoardConfig, "mlflow": MLflowConfig}


def build(settings: dict, out: Path) -> list[Logger]:
    """The loggers ``settings`` (logger name -> its config) names, in a stable order."""
    made = []
    for name in sorted(settings):
        cls, value = LOGGERS.lookup(name), settings[name]
        made.append(cls(LOGGER_CONFIGS[name](**(value or {})) if not is_dataclass(value) else value, out))
    return made
