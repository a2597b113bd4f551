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


# ------------------------------------------- label smoothing, against the naive reference (tests/references.py)
import references as R  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from conftest import HAS_TORCH  # noqa: E402

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
def test_softmax_cross_entropy_matches_the_reference(xp, rng, smoothing):
    logits = rng.standard_normal((7, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2, 3, 0])
    loss, dlogits = losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels), smoothing)
    loss_ref, grad_ref = R.softmax_cross_entropy(logits, labels, smoothing)
    assert float(backend.to_numpy(loss)) == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dlogits), grad_ref, rtol=1e-10, atol=1e-15)


@PROPERTY
@given(st.integers(1, 6), st.integers(2, 12), st.floats(0.0, 0.95), st.sampled_from([0.1, 3.0, 50.0]),
       st.integers(0, 2 ** 16))
def test_label_smoothing_matches_the_reference_for_any_batch_classes_and_amount(n, k, smoothing, scale, seed):
    rng = np.random.default_rng(seed)
    xp = backend.namespace("numpy")
    logits, labels = rng.standard_normal((n, k)) * scale, rng.integers(0, k, n)
    loss, dlogits = losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels), smoothing)
    loss_ref, grad_ref = R.softmax_cross_entropy(logits, labels, smoothing)
    assert float(backend.to_numpy(loss)) == pytest.approx(loss_ref, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dlogits), grad_ref, rtol=1e-9, atol=1e-14)
    # the gradient of every row sums to zero: the targets sum to one, as the probabilities do
    np.testing.assert_allclose(backend.to_numpy(dlogits).sum(axis=1), 0.0, atol=1e-12)


def test_label_smoothing_by_hand(xp):
    """Two classes, smoothing 0.5: targets 1 - 0.5 + 0.5/2 = 0.75 for the label and 0.5/2 = 0.25
    for the other. Logits (ln 3, 0) give probabilities (3/4, 1/4), exactly the targets: gradient
    (p - t) = 0 and loss = the targets' entropy, 0.75 ln(4/3) + 0.25 ln 4 = 0.5623351446...
    Logits (0, 0), label 1, smoothing 0.2: targets (0.1, 0.9), p = (0.5, 0.5), gradient
    (0.4, -0.4), loss ln 2 (as for any target when the probabilities are equal)."""
    loss, d = losses.softmax_cross_entropy(as_xp(xp, [[np.log(3.0), 0.0]]), as_xp(xp, [0]), 0.5)
    assert float(backend.to_numpy(loss)) == pytest.approx(0.75 * np.log(4 / 3) + 0.25 * np.log(4), rel=1e-14)
    np.testing.assert_allclose(backend.to_numpy(d), [[0.0, 0.0]], atol=1e-16)
    loss, d = losses.softmax_cross_entropy(as_xp(xp, [[0.0, 0.0]]), as_xp(xp, [1]), 0.2)
    assert float(backend.to_numpy(loss)) == pytest.approx(np.log(2.0), rel=1e-14)
    np.testing.assert_allclose(backend.to_numpy(d), [[0.4, -0.4]], rtol=1e-14)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
def test_label_smoothing_matches_torch(rng, smoothing):
    import torch

    logits, labels = rng.standard_normal((9, 5)) * 2, rng.integers(0, 5, 9)
    xp = backend.namespace("numpy")
    loss, dlogits = losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels), smoothing)
    lt = torch.from_numpy(logits).requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels), label_smoothing=smoothing)
    loss_t.backward()
    assert float(backend.to_numpy(loss)) == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dlogits), lt.grad.numpy(), rtol=1e-10, atol=1e-15)
