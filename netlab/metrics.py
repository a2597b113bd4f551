"""Measuring a model: evaluation on a split, running training sums, the confusion matrix and
the metrics log (``metrics.csv``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from . import backend, losses
from .data import normalize

SPLITS = ("train", "val", "test")
COLUMNS = ("step", "epoch", "split", "loss", "accuracy", "lr", "elapsed_s")


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray | None = None  # (true class, predicted class) counts, when asked for


def confusion_matrix(logits, labels, num_classes: int):
    """Counts of (true class, predicted class) pairs as a (K, K) float array of ``logits``' namespace."""
    xp = array_namespace(logits)
    pred = xp.argmax(logits, axis=1)
    classes = xp.arange(num_classes, dtype=labels.dtype, device=labels.device)
    true1h = xp.astype(labels[:, None] == classes, xp.float32)
    pred1h = xp.astype(pred[:, None] == xp.astype(classes, pred.dtype), xp.float32)
    return xp.matrix_transpose(true1h) @ pred1h


def evaluate(model, x, y, batch_size: int, mean: float, std: float, num_classes: int | None = None) -> Evaluation:
    """Mean loss and accuracy of ``model`` (in eval mode) on images ``x`` (in [0, 1]) and labels
    ``y``, normalised with ``mean`` and ``std``; with ``num_classes``, also the confusion matrix."""
    was_training = model.training
    model.eval()
    loss_sum = correct = confusion = None
    n = x.shape[0]
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)  # the standard leaves slices past the end unspecified
        xb, yb = normalize(x[lo:hi, ...], mean, std), y[lo:hi]
        logits = model.forward(xb)
        loss, _ = losses.softmax_cross_entropy(logits, yb)
        hits = losses.correct(logits, yb)
        part = loss * yb.shape[0]
        loss_sum = part if loss_sum is None else loss_sum + part
        correct = hits if correct is None else correct + hits
        if num_classes:
            block = confusion_matrix(logits, yb, num_classes)
            confusion = block if confusion is None else confusion + block
    model.train(was_training)
    matrix = backend.to_numpy(confusion).round().astype(int) if num_classes else None
    return Evaluation(float(backend.to_numpy(loss_sum)) / n, float(backend.to_numpy(correct)) / n, matrix)


class Running:
    """Training loss and accuracy summed on the device between two evaluations (no per-step
    host sync); its state goes into checkpoints, so a resumed run reports the same numbers."""

    def __init__(self, xp):
        self.xp = xp
        self.reset()

    def reset(self) -> None:
        self.loss = self.correct = None
        self.count = 0

    def add(self, loss, logits, labels) -> None:
        xp, n = self.xp, labels.shape[0]
        hits = losses.correct(logits, labels)
        part = xp.astype(loss, xp.float64) * n
        self.loss = part if self.loss is None else self.loss + part
        self.correct = hits if self.correct is None else self.correct + hits
        self.count += n

    def total_loss(self) -> float | None:
        """The summed loss so far (a host sync), or None before the first step."""
        return None if self.loss is None else float(backend.to_numpy(self.loss))

    def result(self) -> Evaluation:
        return Evaluation(self.total_loss() / self.count, float(backend.to_numpy(self.correct)) / self.count)

    def state_dict(self) -> dict:
        return {"loss": 0.0 if self.loss is None else self.loss,
                "correct": 0.0 if self.correct is None else self.correct, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        self.count = int(state["count"])
        if self.count:
            xp = self.xp
            self.loss = backend.from_numpy(xp, state["loss"], dtype=xp.float64)
            self.correct = backend.from_numpy(xp, state["correct"], dtype=xp.float64)


class MetricsLog:
    """The rows of the metrics log (one per split and evaluation point), kept in memory for
    checkpoints, plots and the loggers (netlab.loggers writes them out)."""

    def __init__(self, rows: list[dict] | None = None):
        self.rows = list(rows or [])

    def add(self, step: int, epoch: float, results: dict[str, Evaluation], lr: float, elapsed_s: float) -> list[dict]:
        """Record one evaluation point; returns its rows."""
        rows = [dict(step=step, epoch=round(epoch, 4), split=split, loss=results[split].loss,
                     accuracy=results[split].accuracy, lr=lr, elapsed_s=round(elapsed_s, 3)) for split in SPLITS]
        self.rows += rows
        return rows

    def at(self, step: int) -> dict[str, dict]:
        """The rows of evaluation point ``step``, by split."""
        return {r["split"]: r for r in self.rows if r["step"] == step}

    def columns(self) -> dict[str, list]:
        return {col: [r[col] for r in self.rows] for col in COLUMNS}

    @classmethod
    def from_columns(cls, columns: dict) -> "MetricsLog":
        n = len(columns["step"])
        return cls([{c: columns[c][i].item() if hasattr(columns[c][i], "item") else columns[c][i]
                     for c in COLUMNS} for i in range(n)])
