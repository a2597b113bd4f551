"""Evaluation, the confusion matrix, running sums and the metrics log, on hand-made cases."""

from __future__ import annotations

import csv
import types

import numpy as np
import pytest

from netlab import backend, metrics, nn
from conftest import as_xp


class Fixed(nn.Module):
    """A 'model' whose logits are given per image: image i (a 1x1 picture holding i) -> logits[i]."""

    def __init__(self, logits):
        super().__init__()
        self.logits = np.asarray(logits, dtype=np.float64)

    def forward(self, x):
        idx = np.rint(backend.to_numpy(x)[:, 0, 0, 0]).astype(int)
        return backend.from_numpy(self.xp, self.logits[idx])


# six hand-labelled images of three classes; the model predicts 0, 1, 1, 2, 0, 2
LABELS = [0, 1, 2, 2, 1, 2]
LOGITS = [[3, 0, 0], [0, 2, 0], [0, 5, 1], [0, 0, 4], [1, 0, 0], [0, 1, 2]]
CONFUSION = [[1, 0, 0],   # rows: true class; columns: predicted class
             [1, 1, 0],
             [0, 1, 2]]


def test_confusion_matrix_and_accuracy_by_hand(xp):
    model = Fixed(LOGITS).to(xp, dtype=xp.float64)
    x = as_xp(xp, np.arange(6.0).reshape(6, 1, 1, 1))
    y = as_xp(xp, LABELS)
    for batch in (1, 4, 6, 100):
        ev = metrics.evaluate(model, x, y, batch, mean=0.0, std=1.0, num_classes=3)
        np.testing.assert_array_equal(ev.confusion, CONFUSION)
        assert ev.accuracy == pytest.approx(4 / 6)
        logits = np.asarray(LOGITS, dtype=np.float64)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        assert ev.loss == pytest.approx(-logp[np.arange(6), LABELS].mean(), rel=1e-12)


def test_evaluate_normalises_the_images_it_is_given(xp):
    """Images arrive in [0, 1]; the model must see (x - mean) / std: here the logits' index."""
    model = Fixed(LOGITS).to(xp, dtype=xp.float64)
    raw = as_xp(xp, (np.arange(6.0) * 0.5 + 0.25).reshape(6, 1, 1, 1))  # (raw - 0.25) / 0.5 = index
    ev = metrics.evaluate(model, raw, as_xp(xp, LABELS), 4, mean=0.25, std=0.5, num_classes=3)
    np.testing.assert_array_equal(ev.confusion, CONFUSION)
    unnormalised = metrics.evaluate(model, raw, as_xp(xp, LABELS), 4, mean=0.0, std=1.0, num_classes=3)
    assert not np.array_equal(unnormalised.confusion, CONFUSION)


def test_evaluate_restores_training_mode(xp):
    model = Fixed(LOGITS).to(xp, dtype=xp.float64)
    model.train()
    metrics.evaluate(model, as_xp(xp, np.zeros((2, 1, 1, 1))), as_xp(xp, [0, 0]), 1, 0.0, 1.0)
    assert model.training


def test_running_sums_and_their_state(xp):
    run = metrics.Running(xp)
    assert run.total_loss() is None and run.state_dict()["count"] == 0
    logits = as_xp(xp, LOGITS)
    run.add(as_xp(xp, 0.5), logits[:4, ...], as_xp(xp, LABELS[:4]))
    run.add(as_xp(xp, 2.0), logits[4:, ...], as_xp(xp, LABELS[4:]))
    result = run.result()
    assert result.loss == pytest.approx((0.5 * 4 + 2.0 * 2) / 6) and result.accuracy == pytest.approx(4 / 6)
    other = metrics.Running(xp)
    other.load_state_dict({k: backend.to_numpy(v) if k != "count" else v for k, v in run.state_dict().items()})
    assert other.result() == result
    run.reset()
    assert run.total_loss() is None


def test_metrics_log_and_its_csv(tmp_path):
    from netlab.config import CsvConfig
    from netlab.loggers import CsvLogger

    log = metrics.MetricsLog()
    ev = {s: metrics.Evaluation(0.1 * i, 0.5 + 0.1 * i) for i, s in enumerate(metrics.SPLITS)}
    log.add(5, 0.123456, ev, 1e-3, 1.23456)
    csv_logger = CsvLogger(CsvConfig(), tmp_path)
    run = types.SimpleNamespace(log=log)  # what the logger reads of the trainer
    csv_logger.on_fit_start(run)  # a resumed run writes the history it already has
    csv_logger.on_evaluate(run, log.add(10, 0.25, ev, 5e-4, 2.5))
    csv_logger.on_close(run, failed=False)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(r["step"], r["split"]) for r in rows] == [(str(s), sp) for s in (5, 10) for sp in metrics.SPLITS]
    assert rows[0]["epoch"] == "0.1235" and rows[0]["elapsed_s"] == "1.235" and rows[4]["accuracy"] == "0.6"
    assert set(log.at(10)) == set(metrics.SPLITS) and log.at(7) == {}
    again = metrics.MetricsLog.from_columns({k: np.asarray(v) for k, v in log.columns().items()})
    assert again.rows == log.rows


def test_the_accuracy_curve_shows_every_point():
    import matplotlib.pyplot as plt

    from netlab import plots

    rows = [{"step": s, "split": sp, "loss": 2.0 / s, "accuracy": a}
            for s, a in ((10, 0.12), (20, 0.85), (30, 0.99)) for sp in metrics.SPLITS]
    fig = plots.curves_figure(rows)
    low, high = fig.axes[1].get_ylim()
    plt.close(fig)
    assert low <= 12 and high == 100  # the early 12% point is on the plot


# ------------------------------------------------------ any batch size, any set (Hypothesis)
import references as R  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)


@PROPERTY
@given(st.integers(1, 23), st.integers(2, 5), st.integers(1, 25), st.integers(0, 2 ** 16))
def test_evaluation_is_the_mean_over_images_for_any_batch_size(n, k, batch, seed):
    """The loss is the mean over images (a last, shorter batch weighs by its images), the
    accuracy the fraction of arg-max hits, the confusion matrix counts (true, predicted) pairs:
    against the reference loss and plain counting, whether or not the batch size divides n."""
    rng = np.random.default_rng(seed)
    xp = backend.namespace("numpy")
    logits, labels = rng.standard_normal((n, k)) * 2, rng.integers(0, k, n)
    model = Fixed(logits).to(xp, dtype=xp.float64)
    ev = metrics.evaluate(model, as_xp(xp, np.arange(float(n)).reshape(n, 1, 1, 1)), as_xp(xp, labels), batch,
                          mean=0.0, std=1.0, num_classes=k)
    loss_ref, _ = R.softmax_cross_entropy(logits, labels)
    counted = np.zeros((k, k), int)
    for true, predicted in zip(labels, logits.argmax(axis=1)):
        counted[true, predicted] += 1
    assert ev.loss == pytest.approx(loss_ref, rel=1e-12)
    assert ev.accuracy == pytest.approx(np.trace(counted) / n, rel=1e-15)
    np.testing.assert_array_equal(ev.confusion, counted)


@PROPERTY
@given(st.lists(st.tuples(st.integers(1, 9), st.floats(0.0, 5.0)), min_size=1, max_size=6), st.integers(0, 2 ** 16))
def test_running_sums_weigh_each_batch_by_its_images(batches, seed):
    """The training loss between two evaluations is the mean over the images stepped on, for
    batches of any sizes (the last of an epoch is shorter)."""
    rng = np.random.default_rng(seed)
    xp = backend.namespace("numpy")
    run = metrics.Running(xp)
    hits = images = 0
    for size, loss in batches:
        logits, labels = rng.standard_normal((size, 3)), rng.integers(0, 3, size)
        run.add(as_xp(xp, loss), as_xp(xp, logits), as_xp(xp, labels))
        hits, images = hits + int((logits.argmax(axis=1) == labels).sum()), images + size
    result = run.result()
    assert result.loss == pytest.approx(sum(s * l for s, l in batches) / images, rel=1e-12, abs=1e-15)
    assert result.accuracy == pytest.approx(hits / images, rel=1e-15)
