"""The learning-rate range test (netlab/lr_range.py): a smoothing without lag, suggestions where
the loss falls fastest, and a sweep that ends in a non-finite loss still reported as JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from netlab import lr_range, training
from netlab.errors import DivergedError
from netlab.outputs import write_json
from conftest import small_config


def test_centred_means_by_hand():
    assert lr_range.centred([0.0, 0.0, 3.0, 0.0, 0.0], 1) == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert lr_range.centred([4.0, 2.0], 3) == [3.0, 3.0]  # a window wider than the list: the mean
    assert lr_range.centred([1.0, 2.0, 3.0], 0) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("fall_at", [1e-4, 1e-3, 3e-2])
def test_the_suggestion_sits_where_the_loss_falls_fastest_without_lag(fall_at):
    """A loss that falls fastest at ``fall_at`` (a logistic in log lr, with noise): the suggestion
    is within 0.15 decades of it. An exponential average of 0.98 put it 1.5 decades too high."""
    lrs = list(np.geomspace(1e-6, 1.0, 200))
    noise = np.random.default_rng(0).normal(0, 0.01, 200)
    loss = [2.3 - 1.3 / (1 + math.exp(-4 * (math.log10(lr) - math.log10(fall_at)))) + n for lr, n in zip(lrs, noise)]
    smoothed = lr_range.centred(loss, 200 // 40)
    assert abs(math.log10(lr_range._steepest(lrs, smoothed)) - math.log10(fall_at)) < 0.15


def test_a_sweep_that_diverges_is_reported_with_finite_suggestions(tmp_path):
    """Up to lr 1e4 the loss blows up; the test stops, its suggestions are finite and below the
    lr it stopped at, and its JSON (a non-finite loss as null) is written."""
    trainer = training.Trainer(small_config("train.batch_size=32"), tmp_path / "scratch", callbacks=[])
    test = lr_range.run(trainer, start=1e-5, end=1e4, steps=60)
    assert len(test.lrs) == len(test.losses) == len(test.smoothed) < 60 and "at lr" in test.stopped
    assert math.isfinite(test.steepest) and test.steepest < test.lrs[-1]
    finite = [v for v in test.losses if math.isfinite(v)]
    assert test.smoothed[:len(finite)] == lr_range.centred(finite, 60 // 40)  # the suggestions' curve: no lag
    assert 1e-5 <= test.minimum_over_10 * 10 <= test.lrs[-1]
    report = json.loads(write_json(tmp_path / "lr_find.json", test.as_dict()).read_text())
    assert all(v is None or math.isfinite(v) for v in report["losses"] + report["smoothed"])


def test_a_loss_that_is_never_finite_is_one_clear_error(tmp_path, monkeypatch):
    trainer = training.Trainer(small_config("train.batch_size=32"), tmp_path / "scratch", callbacks=[])
    real = lr_range.losses.softmax_cross_entropy
    monkeypatch.setattr(lr_range.losses, "softmax_cross_entropy",
                        lambda logits, y, smoothing: (real(logits, y, smoothing)[0] * float("nan"),
                                                      real(logits, y, smoothing)[1]))
    with pytest.raises(DivergedError, match="not finite from its first steps"):
        lr_range.run(trainer, start=1e-5, end=1.0, steps=20)


def test_a_loss_that_only_rises_gives_no_suggestion(tmp_path):
    """Started far too high, the loss rises from the first step: one error, not the start lr as advice."""
    trainer = training.Trainer(small_config("train.batch_size=32"), tmp_path / "scratch", callbacks=[])
    with pytest.raises(DivergedError, match="never fell below its first value"):
        lr_range.run(trainer, start=10.0, end=1e6, steps=12)
