"""``python -m netlab.evaluate checkpoint=RUN_DIR``: test loss and accuracy, per-class accuracy
and the confusion matrix of a saved model (its best checkpoint unless ``which=last``), printed
and written into the run folder as ``evaluation_best_test.json`` and ``confusion_best_test.png``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .. import checkpoint, data, metrics, plots, saved
from ..config import EvaluateConfig, validate
from ..errors import ConfigError, DataError
from ..outputs import check_output, write_json
from . import CONF
from .exits import command, user_errors


@user_errors
def evaluate(raw: DictConfig) -> dict:
    cfg = validate(raw, EvaluateConfig)
    source = saved.resolve(cfg.checkpoint, cfg.which)
    out = Path(cfg.out).expanduser() if cfg.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"out={out} is a file; evaluate writes two files into the folder out= names")
    tag = f"{source.stem}_{cfg.split}"  # best_test, last_val, ...: evaluating one never overwrites another
    for name in (f"evaluation_{tag}.json", f"confusion_{tag}.png"):
        check_output((out or checkpoint.run_dir(source) or source.parent) / name, "out", inputs=[source])
    trained = saved.open_for(cfg)
    # The checkpoint says which images (dataset, split seed, fraction); the user says where they are.
    run_cfg, dc = trained.config, trained.config.data
    splits = data.load(trained.xp, dc.name, cfg.data.root, val_fraction=dc.val_fraction, seed=run_cfg.seed,
                       download=cfg.data.download, verify=cfg.data.verify, limit=dc.limit,
                       input_shape=trained.input_shape, test_fraction=dc.test_fraction, classes=dc.classes)
    x, y = (splits.test_x, splits.test_y) if cfg.split == "test" else (splits.val_x, splits.val_y)
    if tuple(x.shape[1:]) != trained.input_shape:
        raise DataError(f"{dc.name} images are {tuple(x.shape[1:])} but the model takes {trained.input_shape}")
    k = len(splits.classes)
    ev = metrics.evaluate(trained.model, x, y, cfg.batch_size, trained.mean, trained.std, num_classes=k)
    acc, matrix = ev.accuracy, ev.confusion
    per_class = [float(matrix[i, i] / max(1, matrix[i].sum())) for i in range(k)]
    path = trained.path
    result = {"checkpoint": str(path), "step": trained.step, "split": cfg.split, "dataset": dc.name,
              "backend": cfg.backend.name, f"{cfg.split}_loss": ev.loss, f"{cfg.split}_accuracy": acc,
              "per_class_accuracy": dict(zip(splits.classes, per_class)), "confusion_matrix": matrix.tolist()}
    out = out or trained.run_dir or path.parent
    json_path = write_json(out / f"evaluation_{tag}.json", result)
    png_path = out / f"confusion_{tag}.png"
    plots.confusion(matrix.tolist(), list(splits.classes), png_path,
                    f"{run_cfg.model.name} ({path.stem}, step {trained.step}) on {dc.name} {cfg.split}: {100 * acc:.2f}%")
    print(report(result, splits.classes, matrix))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return result


def report(result, classes, matrix) -> str:
    split = result["split"]
    lines = [f"{result['checkpoint']} (step {result['step']}): {split} loss {result[f'{split}_loss']:.4f}, {split} accuracy "
             f"{100 * result[f'{split}_accuracy']:.2f}% ({int(matrix.trace())}/{int(matrix.sum())})", "",
             "class        accuracy   count"]
    for name, acc, row in zip(classes, result["per_class_accuracy"].values(), matrix):
        lines.append(f"{name:<12} {100 * acc:7.2f}% {int(row.sum()):7d}")
    width = max(5, max(len(str(int(v))) for v in matrix.ravel()) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              " " * 4 + "".join(f"{i:>{width}}" for i in range(len(classes)))]
    lines += [f"{i:>3} " + "".join(f"{int(v):>{width}}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)


@command(EvaluateConfig)
@hydra.main(version_base="1.3", config_path=CONF, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)
