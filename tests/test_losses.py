"""Softmax cross-entropy, softmax, correct counts and the L2 penalty, against values by hand."""

from __future__ import annotations

import numpy as np
import pytest

from netlab import backend, losses, nn
from conftest import as_xp, numeric_grad


def test_softmax_cross_entropy_value_and_gradient(xp, rng):
    logits = rng.standard_normal((6, 5))
    labels = np.array([0, 4, 2, 2, 1, 3])
    loss, dlogits = losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(backend.to_numpy(loss)) == pytest.approx(-np.log(p[np.arange(6), labels]).mean(), rel=1e-12)

    def f():
        return float(backend.to_numpy(losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels))[0]))

    np.testing.assert_allclose(backend.to_numpy(dlogits), numeric_grad(f, logits), atol=1e-8)
    np.testing.assert_allclose(backend.to_numpy(losses.softmax(as_xp(xp, logits))), p, rtol=1e-12)


def test_softmax_cross_entropy_is_stable_for_huge_logits(xp):
    logits = as_xp(xp, [[1000.0, 0.0], [0.0, -1000.0]], dtype=xp.float32)
    loss, dlogits = losses.softmax_cross_entropy(logits, as_xp(xp, [0, 1]))
    assert float(backend.to_numpy(loss)) == pytest.approx(500.0)
    assert np.all(np.isfinite(backend.to_numpy(dlogits)))
    np.testing.assert_allclose(backend.to_numpy(losses.softmax(logits)), [[1, 0], [1, 0]], atol=1e-7)


def test_accuracy_correct_and_l2_penalty(xp):
    logits = as_xp(xp, [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert float(backend.to_numpy(losses.correct(logits, as_xp(xp, [1, 0, 0])))) == 2.0
    assert float(backend.to_numpy(losses.accuracy(logits, as_xp(xp, [1, 1, 1])))) == pytest.approx(2 / 3)
    model = nn.Sequential(nn.Linear(2, 2)).to(xp, dtype=xp.float64)
    total = sum(float((v.astype(np.float64) ** 2).sum()) for v in model.state_dict().values())
    assert float(backend.to_numpy(losses.l2_penalty(model, 0.1))) == pytest.approx(0.05 * total)
    assert losses.l2_penalty(model, 0.0) == 0.0
