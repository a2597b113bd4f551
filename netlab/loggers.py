"""Where a run's metrics go: metrics.csv (``logger=csv``, the default), TensorBoard event files
(``logger=tensorboard``) and MLflow (``logger=mlflow``); several at once with
``logger=[csv,tensorboard]``. A logger is a training callback (``netlab.callbacks``): it gets
the run's config as parameters when the run starts, every metric at every evaluation, and the
curves, results and best checkpoint as artifacts at the end. Their settings are the schema's
(``config.LOGGER_CONFIGS``). Trackers are optional installs (``pip install -e '.[trackers]'``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import is_dataclass
from pathlib import Path

from .callbacks import Callback
from .config import LOGGER_CONFIGS, flatten
from .errors import BackendError
from .metrics import COLUMNS
from .registry import Registry

LOGGERS = Registry("logger")
DEFAULT_STORE = "mlruns"  # logger=mlflow without a tracking URI: mlruns/mlflow.db and mlruns/<experiment id>/


def metric_name(split: str, metric: str) -> str:
    """A curve's name in every tracker: ``val/accuracy`` (metrics.csv has the same as its split
    and metric columns)."""
    return f"{split}/{metric}"


class Logger(Callback):
    """A callback with its settings (one of ``config.LOGGER_CONFIGS``) and the run folder."""

    def __init__(self, settings, out: Path):
        self.settings, self.out = settings, Path(out)


@LOGGERS.register("csv")
class CsvLogger(Logger):
    """metrics.csv: one row per split and evaluation point, appended as they come (a resumed run
    rewrites the history its checkpoint holds)."""

    def on_fit_start(self, trainer):
        self._file = open(self.out / self.settings.file, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._writer.writeheader()
        self.on_evaluate(trainer, trainer.log.rows)

    def on_evaluate(self, trainer, rows):
        self._writer.writerows(rows)
        self._file.flush()

    def on_close(self, trainer, failed):
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard event files through tensorboardX: scalars ``<split>/loss``, ``<split>/accuracy``
    and ``lr`` by step, the config and results as text, the curves as an image."""

    def on_fit_start(self, trainer):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise BackendError("logger=tensorboard needs tensorboardX: pip install -e '.[trackers]'") from None
        self.writer = SummaryWriter(logdir=str(self.out / self.settings.dir))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flatten(trainer.cfg).items()), 0)

    def on_evaluate(self, trainer, rows):
        for r in rows:
            self.writer.add_scalar(metric_name(r["split"], "loss"), r["loss"], r["step"])
            self.writer.add_scalar(metric_name(r["split"], "accuracy"), r["accuracy"], r["step"])
        if rows:
            self.writer.add_scalar("lr", rows[0]["lr"], rows[0]["step"])
        self.writer.flush()

    def on_fit_end(self, trainer, results):
        import numpy as np
        from PIL import Image

        self.writer.add_text("results", "    " + json.dumps(results, indent=2).replace("\n", "\n    "),
                             results.get("steps", 0))
        for path in trainer.artifacts():
            if path.suffix == ".png" and path.exists():
                with Image.open(path) as img:
                    self.writer.add_image(path.stem, np.asarray(img.convert("RGB")), results.get("steps", 0),
                                          dataformats="HWC")

    def on_close(self, trainer, failed):
        if getattr(self, "writer", None) is not None:
            self.writer.close()


@LOGGERS.register("mlflow")
class MLflowLogger(Logger):
    """One MLflow run per training run (so one per sweep job): the config as parameters, every
    metric at every evaluation step, the curves, results and best checkpoint as artifacts."""

    def on_fit_start(self, trainer):
        try:
            import mlflow
        except ImportError:
            raise BackendError("logger=mlflow needs mlflow: pip install -e '.[trackers]'") from None
        self.mlflow = mlflow
        uri = self.settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # one folder where you run: its SQLite store and, beside it, the artifacts MLflow puts in ./mlruns
            Path(DEFAULT_STORE).mkdir(exist_ok=True)
            uri = f"sqlite:///{DEFAULT_STORE}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.settings.experiment)
        self.run = mlflow.start_run(run_name=self.out.name)
        # MLflow keeps parameter values up to 6000 characters; a model file's layers can be longer
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(trainer.cfg).items()})

    def on_evaluate(self, trainer, rows):
        if rows:
            metrics = {metric_name(r["split"], m): r[m] for r in rows for m in ("loss", "accuracy")}
            self.mlflow.log_metrics({**metrics, "lr": rows[0]["lr"]}, step=rows[0]["step"])

    def on_fit_end(self, trainer, results):
        logged = {f"{split}_{m}" for split in ("train", "val", "test") for m in ("loss", "accuracy")}  # the curves have them
        self.mlflow.log_metrics({k: v for k, v in results.items() if isinstance(v, (int, float)) and v is not None
                                 and not isinstance(v, bool) and k not in logged
                                 and ("accuracy" in k or k.endswith("_s") or k == "best_step")},
                                step=results.get("steps", 0))
        for path in trainer.artifacts():
            if path.exists():
                self.mlflow.log_artifact(str(path))

    def on_close(self, trainer, failed):
        if getattr(self, "run", None) is not None:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")
            self.run = None


def build(settings: dict, out: Path) -> list[Logger]:
    """The loggers ``settings`` (logger name -> its config) names, in a stable order."""
    made = []
    for name in sorted(settings):
        cls, value = LOGGERS.lookup(name), settings[name]
        made.append(cls(LOGGER_CONFIGS[name](**(value or {})) if not is_dataclass(value) else value, out))
    return made
