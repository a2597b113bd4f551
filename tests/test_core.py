"""Loss, random numbers, optimizer state, schedules and backend errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from netlab import backend, losses, nn, optim
from conftest import as_xp, numeric_grad


def test_softmax_cross_entropy_value_and_gradient(xp):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5))
    labels = np.array([0, 4, 2, 2, 1, 3])
    loss, dlogits = losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(backend.to_numpy(loss)) == pytest.approx(-np.log(p[np.arange(6), labels]).mean())

    def f():
        return float(backend.to_numpy(losses.softmax_cross_entropy(as_xp(xp, logits), as_xp(xp, labels))[0]))

    np.testing.assert_allclose(backend.to_numpy(dlogits), numeric_grad(f, logits), atol=1e-8)


def test_softmax_cross_entropy_is_stable_for_huge_logits(xp):
    logits = as_xp(xp, [[1000.0, 0.0], [0.0, -1000.0]], dtype=xp.float32)
    loss, dlogits = losses.softmax_cross_entropy(logits, as_xp(xp, [0, 1]))
    assert float(backend.to_numpy(loss)) == pytest.approx(500.0)
    assert np.all(np.isfinite(backend.to_numpy(dlogits)))


def test_accuracy_and_l2_penalty(xp):
    logits = as_xp(xp, [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert float(backend.to_numpy(losses.accuracy(logits, as_xp(xp, [1, 1, 1])))) == pytest.approx(2 / 3)
    model = nn.Sequential(nn.Linear(2, 2)).to(xp, dtype=xp.float64)
    total = sum(float((v.astype(np.float64) ** 2).sum()) for v in model.state_dict().values())
    assert float(backend.to_numpy(losses.l2_penalty(model, 0.1))) == pytest.approx(0.05 * total)
    assert losses.l2_penalty(model, 0.0) == 0.0


# ----------------------------------------------------------------------------- random numbers
def test_generator_streams_are_identical_on_every_backend(xp):
    ref = backend.Generator(42)
    gen = backend.Generator(42)
    np_xp = backend.namespace("numpy")
    for draw in ("random", "normal"):
        a = backend.to_numpy(getattr(ref, draw)(np_xp, (3, 50), dtype=np_xp.float64))
        b = backend.to_numpy(getattr(gen, draw)(xp, (3, 50), dtype=xp.float64))
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(backend.to_numpy(ref.permutation(np_xp, 100)),
                                  backend.to_numpy(gen.permutation(xp, 100)))


def test_generator_statistics_and_state():
    xp = backend.namespace("numpy")
    gen = backend.Generator(1)
    u = gen.random(xp, (200_000,), dtype=xp.float64)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.001
    z = gen.normal(xp, (200_000,), dtype=xp.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert sorted(gen.permutation(xp, 1000).tolist()) == list(range(1000))
    state = gen.state_dict()
    a = gen.random(xp, (10,))
    gen.load_state_dict(state)
    np.testing.assert_array_equal(a, gen.random(xp, (10,)))
    assert not np.array_equal(a, gen.random(xp, (10,)))
    assert not np.array_equal(backend.Generator(1).random(xp, (10,)), backend.Generator(2).random(xp, (10,)))
    assert not np.array_equal(gen.spawn(0).random(xp, (10,)), gen.spawn(1).random(xp, (10,)))


# ------------------------------------------------------------------------------- optimizers
def _train(model, opt, steps, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = backend.from_numpy(model.xp, rng.standard_normal((8, 4)), dtype=model.xp.float32)
        y = backend.from_numpy(model.xp, rng.integers(0, 3, 8))
        _, d = losses.softmax_cross_entropy(model.forward(x), y)
        model.backward(d)
        opt.step()


@pytest.mark.parametrize("make", [
    lambda m: optim.SGD(m, lr=0.1, momentum=0.9), lambda m: optim.Adam(m), lambda m: optim.Adagrad(m),
    lambda m: optim.RMSprop(m, momentum=0.5),
])
def test_optimizer_state_dict_resumes_exactly(xp, make):
    def fresh():
        nn.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).to(xp)

    a = fresh()
    opt_a = make(a)
    _train(a, opt_a, 3)
    b = fresh()
    b.load_state_dict(a.state_dict())
    opt_b = make(b)
    opt_b.load_state_dict(opt_a.state_dict())
    _train(a, opt_a, 3, seed=1)
    _train(b, opt_b, 3, seed=1)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_optimizer_rejects_bad_values():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam(model, lr=-1)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.SGD(model, weight_decay=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(model, nesterov=True)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
@pytest.mark.parametrize("ours,theirs", [
    (lambda: optim.StepLR(7, 0.5), lambda o: __import__("torch").optim.lr_scheduler.StepLR(o, 7, 0.5)),
    (lambda: optim.Cosine(40), lambda o: __import__("torch").optim.lr_scheduler.CosineAnnealingLR(o, 40)),
    (lambda: optim.OneCycle(40), lambda o: __import__("torch").optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=40)),
])
def test_schedules_match_torch(ours, theirs):
    import torch

    opt_t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched_t, sched = theirs(opt_t), ours()
    for step in range(40):
        assert sched(step, 0.1) == pytest.approx(opt_t.param_groups[0]["lr"], rel=1e-6, abs=1e-12), step
        opt_t.step()
        sched_t.step()


def test_optimizer_uses_schedule():
    model = nn.Sequential(nn.Linear(2, 2))
    opt = optim.SGD(model, lr=1.0, schedule=optim.StepLR(2, 0.1))
    lrs = []
    for _ in range(5):
        lrs.append(opt.lr)
        model.backward(model.forward(model.xp.ones((1, 2))))
        opt.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


# -------------------------------------------------------------------------------- backends
def test_unknown_backend_is_a_clear_error():
    with pytest.raises(backend.BackendError, match="unknown backend 'jax'.*numpy"):
        backend.namespace("jax")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_missing_cupy_names_the_fix():
    with pytest.raises(backend.BackendError, match=r"netlab\[cuda\]"):
        backend.namespace("cupy")


def test_to_numpy_round_trip(xp):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = backend.from_numpy(xp, a)
    assert backend.to_numpy(b).dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(b), a)
    assert backend.name_of(xp) in backend.NAMES
