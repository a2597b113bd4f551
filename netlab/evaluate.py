"""``python -m netlab.evaluate checkpoint=PATH``: test loss and accuracy, per-class accuracy and
the confusion matrix (printed, and as confusion.png) of a saved model."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from . import backend, data, metrics, plots
from .app import command, user_errors
from .checkpoint import load_model, resolve
from .config import EvaluateConfig, validate
from .errors import DataError
from .outputs import output_dir, write_json

log = logging.getLogger("netlab.evaluate")


@user_errors
def evaluate(raw: DictConfig) -> dict:
    cfg = validate(raw, EvaluateConfig)
    xp = backend.namespace(cfg.backend.name)
    model, run_cfg, mean, std = load_model(cfg.checkpoint, xp)
    # The checkpoint says which images (dataset, split seed, fraction); the user says where they are.
    dc = run_cfg.data
    splits = data.load(xp, dc.name, cfg.data.root, val_fraction=dc.val_fraction, seed=run_cfg.seed,
                       download=cfg.data.download, verify=cfg.data.verify, limit=dc.limit)
    x, y = (splits.test_x, splits.test_y) if cfg.split == "test" else (splits.val_x, splits.val_y)
    if tuple(x.shape[1:]) != tuple(run_cfg.model.input_shape):
        raise DataError(f"{dc.name} images are {tuple(x.shape[1:])} but the model takes "
                        f"{tuple(run_cfg.model.input_shape)}")
    k = len(splits.classes)
    ev = metrics.evaluate(model, x, y, cfg.batch_size, mean, std, num_classes=k)
    loss, acc, matrix = ev.loss, ev.accuracy, ev.confusion
    per_class = [float(matrix[i, i] / max(1, matrix[i].sum())) for i in range(k)]
    out = output_dir()
    result = {"checkpoint": str(resolve(cfg.checkpoint)), "split": cfg.split, "dataset": dc.name,
              "backend": cfg.backend.name, f"{cfg.split}_loss": loss, f"{cfg.split}_accuracy": acc,
              "per_class_accuracy": dict(zip(splits.classes, per_class)), "confusion_matrix": matrix.tolist()}
    write_json(out / "evaluation.json", result)
    plots.confusion(matrix.tolist(), list(splits.classes), out / "confusion.png",
                    f"{run_cfg.model.name} on {dc.name} {cfg.split}: {100 * acc:.2f}%")
    print(report(result, splits.classes, matrix))
    log.info("wrote %s and %s", out / "evaluation.json", out / "confusion.png")
    return result


def report(result, classes, matrix) -> str:
    split = result["split"]
    lines = [f"{split} loss {result[f'{split}_loss']:.4f}, {split} accuracy "
             f"{100 * result[f'{split}_accuracy']:.2f}% ({int(matrix.trace())}/{int(matrix.sum())})", "",
             "class        accuracy   count"]
    for name, acc, row in zip(classes, result["per_class_accuracy"].values(), matrix):
        lines.append(f"{name:<12} {100 * acc:7.2f}% {int(row.sum()):7d}")
    width = max(5, max(len(str(int(v))) for v in matrix.ravel()) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              " " * 4 + "".join(f"{i:>{width}}" for i in range(len(classes)))]
    lines += [f"{i:>3} " + "".join(f"{int(v):>{width}}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
