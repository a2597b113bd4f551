"""Optimizers and learning-rate schedules against hand-written float64 NumPy references.

Every expectation here is the textbook (``torch.optim``) formula written out again in plain
NumPy, never computed by netlab, so these tests need no torch. Gradients are written straight
into ``layer.grads`` (a different random gradient every step, so that a buffer kept wrongly
shows) and the parameters are compared after every step at rtol 1e-12 in float64, on every
backend of the ``xp`` fixture. The comparisons with PyTorch at the end are a second opinion
that runs only when torch is installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from netlab import backend, losses, nn, optim
from conftest import as_xp

RTOL = 1e-12


# --------------------------------------------------------------------- NumPy references
# Each factory returns ``update(p, g, state, t) -> new p`` for one parameter: ``state`` is a
# dict private to that parameter, ``t`` the 1-based step number.
def ref_sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    def update(p, g, state, t):
        g = g + weight_decay * p
        if momentum:
            # torch: the first momentum buffer is the gradient itself (no (1 - dampening) term)
            state["buf"] = g.copy() if t == 1 else momentum * state["buf"] + g
            g = g + momentum * state["buf"] if nesterov else state["buf"]
        return p - lr * g
    return update


def ref_adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas

    def update(p, g, state, t):
        g = g + weight_decay * p
        state["m"] = b1 * state.get("m", np.zeros_like(p)) + (1 - b1) * g
        state["v"] = b2 * state.get("v", np.zeros_like(p)) + (1 - b2) * g ** 2
        m_hat = state["m"] / (1 - b1 ** t)
        v_hat = state["v"] / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return update


def ref_adagrad(lr, eps=1e-10, weight_decay=0.0):
    def update(p, g, state, t):
        g = g + weight_decay * p
        state["sum"] = state.get("sum", np.zeros_like(p)) + g ** 2
        return p - lr * g / (np.sqrt(state["sum"]) + eps)
    return update


def ref_rmsprop(lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    def update(p, g, state, t):
        g = g + weight_decay * p
        state["sq"] = alpha * state.get("sq", np.zeros_like(p)) + (1 - alpha) * g ** 2
        step = g / (np.sqrt(state["sq"]) + eps)
        if momentum:
            state["buf"] = momentum * state.get("buf", np.zeros_like(p)) + step
            step = state["buf"]
        return p - lr * step
    return update


# ------------------------------------------------------------------------------- harness
def make_model(xp, rng):
    """Two Linear layers in float64 on ``xp`` with N(0, 1) weights; returns (model, NumPy copy).

    Both biases have the same shape, so state shared between parameters would not crash but
    give wrong values."""
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2)).to(xp, dtype=xp.float64)
    ref = {}
    for key, layer, name in model.named_parameters():
        ref[key] = rng.standard_normal(tuple(layer.params[name].shape))
        layer.params[name] = as_xp(xp, ref[key])
    return model, ref


def check_steps(xp, seed, make_opt, update, steps=4, grad_scale=1.0):
    """Run ``steps`` optimizer steps with fresh random gradients; compare after every step."""
    rng = np.random.default_rng(seed)
    model, ref = make_model(xp, rng)
    opt = make_opt(model)
    state = {key: {} for key in ref}
    history = []
    for t in range(1, steps + 1):
        for key, layer, name in model.named_parameters():
            g = grad_scale * rng.standard_normal(ref[key].shape)
            layer.grads[name] = as_xp(xp, g)
            ref[key] = update(ref[key], g, state[key], t)
        opt.step()
        for key, layer, name in model.named_parameters():
            np.testing.assert_allclose(backend.to_numpy(layer.params[name]), ref[key], rtol=RTOL, atol=0,
                                       err_msg=f"{key} after step {t}")
        history.append({k: v.copy() for k, v in ref.items()})
    return history


# ---------------------------------------------------------------------------- optimizers
SGD_CASES = [
    pytest.param(dict(lr=0.1), id="plain"),
    pytest.param(dict(lr=0.1, weight_decay=0.3), id="weight_decay"),
    pytest.param(dict(lr=0.05, momentum=0.9), id="momentum"),
    pytest.param(dict(lr=0.05, momentum=0.9, weight_decay=0.2), id="momentum_weight_decay"),
    pytest.param(dict(lr=0.05, momentum=0.9, nesterov=True), id="nesterov"),
    pytest.param(dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.2), id="nesterov_weight_decay"),
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_reference(xp, kw):
    check_steps(xp, 1, lambda m: optim.SGD(m, **kw), ref_sgd(**kw))


ADAM_CASES = [
    pytest.param(dict(lr=1e-2), id="defaults"),  # betas (0.9, 0.999), eps 1e-8 as torch
    pytest.param(dict(lr=1e-2, weight_decay=0.3), id="weight_decay"),
    # eps of the order of sqrt(v_hat), so that its value and place (outside the sqrt) matter
    pytest.param(dict(lr=2e-2, betas=(0.8, 0.95), eps=0.3), id="betas_eps"),
    pytest.param(dict(lr=2e-2, betas=(0.5, 0.6), eps=1e-3, weight_decay=0.1), id="all"),
]


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam_matches_reference(xp, kw):
    check_steps(xp, 2, lambda m: optim.Adam(m, **kw), ref_adam(**kw), steps=5)


def test_adam_bias_correction_first_steps(xp):
    """With both moments bias-corrected, step 1 moves every parameter by exactly lr (up to eps),
    and a constant gradient keeps doing so at steps 2 and 3; dropping the correction of m
    shrinks the step to (1 - b1) lr, dropping that of v grows it by 1/sqrt(1 - b2)."""
    lr = 1e-2
    rng = np.random.default_rng(3)
    model, ref = make_model(xp, rng)
    opt = optim.Adam(model, lr=lr, betas=(0.9, 0.999), eps=1e-12)
    grads = {key: rng.choice([-1.0, 1.0], p.shape) * (0.5 + np.abs(rng.standard_normal(p.shape)))
             for key, p in ref.items()}
    prev = ref
    for t in (1, 2, 3):
        for key, layer, name in model.named_parameters():
            layer.grads[name] = as_xp(xp, grads[key])
        opt.step()
        now = {key: backend.to_numpy(p) for key, p in model.params.items()}
        for key in ref:
            np.testing.assert_allclose(prev[key] - now[key], lr * np.sign(grads[key]), rtol=1e-8,
                                       err_msg=f"{key} at step {t}")
        prev = now


def test_adam_step_values_with_changing_gradients(xp):
    """Steps 1, 2 and 3 in closed form for one scalar parameter (b1 = 0.5, b2 = 0.75, eps far below
    the rounding of the result)."""
    lr, b1, b2 = 0.1, 0.5, 0.75
    model = nn.Sequential(nn.Linear(1, 1)).to(xp, dtype=xp.float64)
    layer = model[0]
    layer.params["weight"], layer.params["bias"] = as_xp(xp, [[1.0]]), as_xp(xp, [0.0])
    opt = optim.Adam(model, lr=lr, betas=(b1, b2), eps=1e-300)
    p, expected = 1.0, []
    gs = [2.0, 1.0, 4.0]
    # m_t and v_t by hand: m1 = 1, v1 = 1; m2 = 1, v2 = 1; m3 = 2.5, v3 = 4.75
    for t, m, v in ((1, 1.0, 1.0), (2, 1.0, 1.0), (3, 2.5, 4.75)):
        p -= lr * (m / (1 - b1 ** t)) / math.sqrt(v / (1 - b2 ** t))
        expected.append(p)
    for t, g in enumerate(gs):
        layer.grads["weight"], layer.grads["bias"] = as_xp(xp, [[g]]), as_xp(xp, [1.0])
        opt.step()
        assert float(backend.to_numpy(layer.params["weight"])[0, 0]) == pytest.approx(expected[t], rel=RTOL), t


ADAGRAD_CASES = [
    pytest.param(dict(lr=0.1), id="defaults"),
    pytest.param(dict(lr=0.1, weight_decay=0.3), id="weight_decay"),
    pytest.param(dict(lr=0.1, eps=0.5, weight_decay=0.1), id="eps_weight_decay"),
]


@pytest.mark.parametrize("kw", ADAGRAD_CASES)
def test_adagrad_matches_reference(xp, kw):
    check_steps(xp, 4, lambda m: optim.Adagrad(m, **kw), ref_adagrad(**kw))


RMSPROP_CASES = [
    pytest.param(dict(lr=1e-2), id="defaults"),  # alpha 0.99, eps 1e-8 as torch
    pytest.param(dict(lr=1e-2, alpha=0.8, eps=0.2), id="alpha_eps"),
    pytest.param(dict(lr=1e-2, weight_decay=0.3), id="weight_decay"),
    pytest.param(dict(lr=1e-2, momentum=0.9), id="momentum"),
    pytest.param(dict(lr=1e-2, alpha=0.9, eps=0.1, momentum=0.6, weight_decay=0.2), id="momentum_all"),
]


@pytest.mark.parametrize("kw", RMSPROP_CASES)
def test_rmsprop_matches_reference(xp, kw):
    check_steps(xp, 5, lambda m: optim.RMSprop(m, **kw), ref_rmsprop(**kw))


@pytest.mark.parametrize("name,make,update", [
    ("sgd", lambda m, s: optim.SGD(m, lr=0.1, momentum=0.5, schedule=s), lambda lr: ref_sgd(lr, momentum=0.5)),
    ("adam", lambda m, s: optim.Adam(m, lr=0.1, schedule=s), lambda lr: ref_adam(lr)),
], ids=["sgd", "adam"])
def test_optimizer_uses_lr_of_current_step(xp, name, make, update):
    """Update k (0-based) uses schedule(k, base): the first update uses step 0's lr."""
    def schedule(step, base_lr):
        return base_lr * [1.0, 0.25, 2.0, 0.5, 3.0][step]

    def scheduled(p, g, state, t):
        return update(schedule(t - 1, 0.1))(p, g, state, t)

    calls = []
    rng = np.random.default_rng(6)
    model, _ = make_model(xp, rng)
    opt = make(model, schedule)
    for k in range(5):
        calls.append(opt.lr)
        for _, layer, pname in model.named_parameters():
            layer.grads[pname] = as_xp(xp, rng.standard_normal(tuple(layer.params[pname].shape)))
        opt.step()
    assert calls == pytest.approx([0.1, 0.025, 0.2, 0.05, 0.3], rel=1e-15)
    check_steps(xp, 7, lambda m: make(m, schedule), scheduled, steps=5)


def test_weight_decay_is_l2_on_the_gradient(xp):
    """weight_decay wd with gradient g is the same step as no decay with gradient g + wd * p."""
    wd = 0.25
    for make in (lambda m, w: optim.SGD(m, lr=0.1, momentum=0.9, weight_decay=w),
                 lambda m, w: optim.Adam(m, lr=0.1, weight_decay=w),
                 lambda m, w: optim.Adagrad(m, lr=0.1, weight_decay=w),
                 lambda m, w: optim.RMSprop(m, lr=0.1, momentum=0.5, weight_decay=w)):
        rng = np.random.default_rng(8)
        a, _ = make_model(xp, rng)
        b, _ = make_model(xp, np.random.default_rng(8))
        opt_a, opt_b = make(a, wd), make(b, 0.0)
        for _ in range(3):
            for (_, la, n), (_, lb, _) in zip(a.named_parameters(), b.named_parameters()):
                g = rng.standard_normal(tuple(la.params[n].shape))
                la.grads[n] = as_xp(xp, g)
                lb.grads[n] = as_xp(xp, g + wd * backend.to_numpy(lb.params[n]))
            opt_a.step()
            opt_b.step()
        for k, v in a.state_dict().items():
            np.testing.assert_allclose(v, b.state_dict()[k], rtol=RTOL, err_msg=k)


# ----------------------------------------------------------------------------- schedules
def assert_lrs(sched, base, expected):
    got = [sched(step, base) for step in range(len(expected))]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-15)


def test_constant_schedule():
    assert [optim.Constant()(s, 0.3) for s in (0, 1, 100)] == [0.3, 0.3, 0.3]


def test_steplr_values():
    assert_lrs(optim.StepLR(3, 0.5), 0.8, [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1])
    assert_lrs(optim.StepLR(1), 1.0, [1.0, 0.1, 0.01, 0.001])  # default gamma 0.1
    with pytest.raises(ValueError):
        optim.StepLR(0)


def test_cosine_without_warmup():
    base, total = 0.1, 10
    expected = [0.5 * base * (1 + math.cos(math.pi * s / total)) for s in range(total + 1)] + [0.0] * 3
    assert_lrs(optim.Cosine(total), base, expected)
    assert optim.Cosine(total)(0, base) == base
    with pytest.raises(ValueError):
        optim.Cosine(0)


def test_cosine_warmup_and_min_lr():
    base, total, warm, lo = 0.1, 25, 5, 0.01
    sched = optim.Cosine(total, warmup_steps=warm, min_lr=lo)
    # linear warm-up: step s gives base * (s + 1) / warm, so step 0 is base / warm, not 0
    assert sched(0, base) == pytest.approx(base / warm, rel=RTOL)
    assert_lrs(sched, base, [0.02, 0.04, 0.06, 0.08, 0.1])
    # then cosine from base down to min_lr over the remaining total - warm steps
    expected = [lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
                for s in range(warm, total + 1)]
    np.testing.assert_allclose([sched(s, base) for s in range(warm, total + 1)], expected, rtol=RTOL)
    assert sched(warm, base) == pytest.approx(base, rel=RTOL)
    assert sched(warm + (total - warm) // 2, base) == pytest.approx((base + lo) / 2, rel=RTOL)  # mid-way
    assert sched(total, base) == pytest.approx(lo, rel=RTOL)  # the end is min_lr ...
    assert sched(total + 7, base) == pytest.approx(lo, rel=RTOL)  # ... and stays there
    assert min(sched(s, base) for s in range(total + 10)) == pytest.approx(lo, rel=RTOL)


def onecycle_reference(step, base, total, pct_start, div_factor, final_div_factor):
    """torch.optim.lr_scheduler.OneCycleLR, anneal_strategy='cos', three_phase=False."""
    initial = base / div_factor
    final = initial / final_div_factor
    phases = [(float(pct_start * total) - 1, initial, base), (total - 1.0, base, final)]
    start_step = 0.0
    for i, (end_step, lr_from, lr_to) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return lr_to + (lr_from - lr_to) / 2.0 * (math.cos(math.pi * pct) + 1)
        start_step = end_step
    raise AssertionError("unreachable")


@pytest.mark.parametrize("total,pct,div,final_div", [
    (40, 0.3, 25.0, 1e4),   # defaults: peak at step 11
    (20, 0.25, 10.0, 100.0),  # peak at step 4
    (25, 0.3, 25.0, 1e4),   # pct * total = 7.5: the peak falls between steps 6 and 7
])
def test_onecycle_values(total, pct, div, final_div):
    base = 0.1
    sched = (optim.OneCycle(total) if (pct, div, final_div) == (0.3, 25.0, 1e4)
             else optim.OneCycle(total, pct_start=pct, div_factor=div, final_div_factor=final_div))
    expected = [onecycle_reference(s, base, total, pct, div, final_div) for s in range(total)]
    assert_lrs(sched, base, expected)
    lrs = [sched(s, base) for s in range(total)]
    assert lrs[0] == pytest.approx(base / div, rel=RTOL)
    assert lrs[-1] == pytest.approx(base / (div * final_div), rel=RTOL)
    peak = pct * total - 1
    if peak == int(peak):
        assert lrs[int(peak)] == pytest.approx(base, rel=RTOL)
        assert max(lrs) == lrs[int(peak)] and lrs.index(max(lrs)) == int(peak)
    assert lrs == sorted(lrs[:math.floor(peak) + 1]) + sorted(lrs[math.floor(peak) + 1:], reverse=True)


def test_onecycle_rejects_too_few_steps():
    with pytest.raises(ValueError):
        optim.OneCycle(1)


# ------------------------------------------- state, validation 
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
    lambda m: optim.SGD(m, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, schedule=optim.StepLR(2, 0.5)),
    lambda m: optim.Adam(m, weight_decay=1e-2, schedule=optim.Cosine(6, warmup_steps=2)),
], ids=["momentum", "adam", "adagrad", "rmsprop_momentum", "nesterov_steplr", "adam_cosine"])
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
    with pytest.raises(ValueError, match=r"learning rate|\blr\b"):  # message being reworded to "lr must be"
        optim.Adam(model, lr=-1)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.SGD(model, weight_decay=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(model, nesterov=True)


def test_optimizer_uses_schedule():
    model = nn.Sequential(nn.Linear(2, 2))
    opt = optim.SGD(model, lr=1.0, schedule=optim.StepLR(2, 0.1))
    lrs = []
    for _ in range(5):
        lrs.append(opt.lr)
        model.backward(model.forward(model.xp.ones((1, 2))))
        opt.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


# ------------------------------------------------- second opinion: PyTorch, when installed
def _torch_twin(model):
    from netlab.torch_twin import torch_twin

    return torch_twin(model)


@pytest.mark.parametrize("ours,theirs,steps", [
    (lambda: optim.StepLR(7, 0.5), lambda torch, o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5), 40),
    (lambda: optim.Cosine(40), lambda torch, o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 40), 40),
    (lambda: optim.Cosine(40, min_lr=0.01),
     lambda torch, o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 40, eta_min=0.01), 41),
    (lambda: optim.OneCycle(40), lambda torch, o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=40), 40),
    (lambda: optim.OneCycle(20, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
     lambda torch, o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=20, pct_start=0.25, div_factor=10.0,
                                                          final_div_factor=100.0), 20),
], ids=["steplr", "cosine", "cosine_min_lr", "onecycle", "onecycle_args"])
def test_schedules_match_torch(ours, theirs, steps):
    torch = pytest.importorskip("torch")
    opt_t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched_t, sched = theirs(torch, opt_t), ours()
    for step in range(steps):
        assert sched(step, 0.1) == pytest.approx(opt_t.param_groups[0]["lr"], rel=1e-6, abs=1e-12), step
        opt_t.step()
        sched_t.step()


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))


TORCH_OPTIMIZERS = [
    ("sgd", lambda m: optim.SGD(m, lr=0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    ("momentum", lambda m: optim.SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-3),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("nesterov", lambda m: optim.SGD(m, lr=0.05, momentum=0.9, nesterov=True),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("adam", lambda m: optim.Adam(m, lr=1e-3, weight_decay=1e-2),
     lambda t, p: t.optim.Adam(p, lr=1e-3, weight_decay=1e-2)),
    ("adagrad", lambda m: optim.Adagrad(m, lr=1e-2, weight_decay=1e-3),
     lambda t, p: t.optim.Adagrad(p, lr=1e-2, weight_decay=1e-3)),
    ("rmsprop", lambda m: optim.RMSprop(m, lr=1e-3, weight_decay=1e-3),
     lambda t, p: t.optim.RMSprop(p, lr=1e-3, weight_decay=1e-3)),
    ("rmsprop_momentum", lambda m: optim.RMSprop(m, lr=1e-3, momentum=0.9),
     lambda t, p: t.optim.RMSprop(p, lr=1e-3, momentum=0.9)),
]


@pytest.mark.parametrize("name,ours,theirs", TORCH_OPTIMIZERS, ids=[o[0] for o in TORCH_OPTIMIZERS])
def test_five_optimizer_steps_match_torch(xp, name, ours, theirs):
    """The same gradients give the same parameters: torch's optimizer is fed netlab's gradients
    (the net's gradients are compared in test_nn.py), since Adagrad's first step
    g/(|g|+eps) amplifies float32 round-off in near-zero gradients to a full lr step."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    model = small_cnn().to(xp)
    twin = _torch_twin(model)
    opt, opt_t = ours(model), theirs(torch, twin.parameters())
    for _ in range(5):
        x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 10, 16).astype(np.int64)
        logits = model.forward(backend.from_numpy(xp, x))
        _, dlogits = losses.softmax_cross_entropy(logits, backend.from_numpy(xp, y))
        model.backward(dlogits)
        grads = model.grads
        for k, p in twin.named_parameters():
            p.grad = torch.from_numpy(backend.to_numpy(grads[k]).copy())
        opt.step()
        opt_t.step()
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), atol=1e-4, err_msg=k)


# ------------------------------- AdamW, clipping and every optimizer against tests/references.py
import references as R  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REFERENCE_CLASSES = {"sgd": optim.SGD, "momentum": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW,
                     "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop}


def check_against_reference(xp, name, hp: dict, clip_norm, steps, grad_scale, seed, schedule=None):
    """``steps`` steps of netlab's ``name`` optimizer with ``hp`` (and gradient clipping at
    ``clip_norm``, and ``schedule``) against the reference, fresh random gradients each step,
    compared after each."""
    rng = np.random.default_rng(seed)
    model, ref = make_model(xp, rng)
    opt = REFERENCE_CLASSES[name](model, clip_norm=clip_norm, schedule=schedule, **hp)
    update = R.OPTIMIZERS[name]
    state = {key: {} for key in ref}
    for t in range(1, steps + 1):
        grads = {key: grad_scale * rng.standard_normal(p.shape) for key, p in ref.items()}
        for key, layer, pname in model.named_parameters():
            layer.grads[pname] = as_xp(xp, grads[key])
        if clip_norm is not None:
            grads = R.clip_by_global_norm(grads, clip_norm)
        step_hp = dict(hp, lr=schedule(t - 1, hp["lr"])) if schedule else hp
        ref = {key: update(p, grads[key], state[key], t, **step_hp) for key, p in ref.items()}
        opt.step()
        for key, layer, pname in model.named_parameters():
            np.testing.assert_allclose(backend.to_numpy(layer.params[pname]), ref[key], rtol=1e-10, atol=1e-13,
                                       err_msg=f"{name} {hp} clip {clip_norm}: {key} after step {t}")


@st.composite
def optimizer_settings(draw):
    name = draw(st.sampled_from(sorted(REFERENCE_CLASSES)))
    lr = draw(st.floats(1e-3, 0.5))
    wd = draw(st.sampled_from([0.0, 0.05, 0.3]))
    hp = {"lr": lr, "weight_decay": wd}
    if name in ("sgd", "momentum"):
        hp["momentum"] = draw(st.sampled_from([0.0, 0.5, 0.9])) if name == "sgd" else draw(st.sampled_from([0.5, 0.9]))
        hp["nesterov"] = hp["momentum"] > 0 and draw(st.booleans())
    elif name in ("adam", "adamw"):
        hp["betas"] = (draw(st.floats(0.0, 0.95)), draw(st.floats(0.5, 0.999)))
        hp["eps"] = draw(st.sampled_from([1e-8, 1e-3, 0.3]))
    elif name == "adagrad":
        hp["eps"] = draw(st.sampled_from([1e-10, 0.1]))
    else:
        hp.update(alpha=draw(st.floats(0.5, 0.99)), eps=draw(st.sampled_from([1e-8, 0.1])),
                  momentum=draw(st.sampled_from([0.0, 0.6])))
    clip = draw(st.sampled_from([None, 0.3, 1.0, 50.0]))
    return dict(name=name, hp=hp, clip_norm=clip, steps=draw(st.integers(1, 4)),
                grad_scale=draw(st.sampled_from([0.1, 1.0, 5.0])), seed=draw(st.integers(0, 2 ** 16)))


@PROPERTY
@given(optimizer_settings())
def test_every_optimizer_matches_the_reference_for_any_hyperparameters(s):
    """Any lr, decay, betas, eps, momentum, alpha and clipping threshold (above and below the
    gradients' norm), over one to four steps: no test relies on one convenient value."""
    check_against_reference(backend.namespace("numpy"), **s)


@pytest.mark.parametrize("name,hp,clip_norm", [
    ("adamw", dict(lr=0.05, weight_decay=0.2), None),
    ("adamw", dict(lr=0.02, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.5), 0.5),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1), 0.7),
    ("adam", dict(lr=0.01, weight_decay=0.1), 0.4),
    ("rmsprop", dict(lr=0.01, momentum=0.5), 2.0),
    ("adagrad", dict(lr=0.1), 0.2),
], ids=["adamw", "adamw_clipped", "nesterov_clipped", "adam_clipped", "rmsprop_clipped", "adagrad_clipped"])
def test_adamw_and_clipping_match_the_reference(xp, name, hp, clip_norm):
    check_against_reference(xp, name, hp, clip_norm, steps=4, grad_scale=2.0, seed=11)


@pytest.mark.parametrize("name,hp,schedule", [
    ("adamw", dict(lr=0.05, weight_decay=0.3), lambda: optim.StepLR(2, 0.25)),
    ("adamw", dict(lr=0.05, weight_decay=0.3), lambda: optim.OneCycle(5)),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.1), lambda: optim.Cosine(5, warmup_steps=2)),
], ids=["adamw_steplr", "adamw_onecycle", "sgd_cosine"])
def test_scheduled_steps_match_the_reference(xp, name, hp, schedule):
    """Each step's lr is the schedule's, in the update and in AdamW's decay (a constant lr would
    hide a decay taken at the base lr)."""
    check_against_reference(xp, name, hp, None, steps=5, grad_scale=1.0, seed=12, schedule=schedule())


def test_adamw_decay_and_global_norm_clipping_by_hand(xp):
    """AdamW, lr 0.1, weight decay 0.5, p = 1, g = 2: the weight first shrinks to 1 (1 - 0.1 * 0.5)
    = 0.95, then Adam's first step moves it by lr (m_hat / sqrt(v_hat) = g / |g| = 1): 0.85. (Adam's
    L2 would add 0.5 to g and move it by lr from 1: 0.9.)
    Clipping at 1 with gradients 3 and 4 in two parameters: the global norm is 5, so both are
    scaled by 1 / (5 + 1e-6), to 0.6 and 0.8 (clipping each alone would give 1 and 1); SGD lr 1
    then moves 1 to 0.4 and 0.2. Clipping at 10 leaves them alone: 1 - 3 and 1 - 4."""
    model = nn.Sequential(nn.Linear(1, 1)).to(xp, dtype=xp.float64)
    layer = model[0]

    def step(opt, gw, gb):
        layer.params["weight"], layer.params["bias"] = as_xp(xp, [[1.0]]), as_xp(xp, [1.0])
        layer.grads["weight"], layer.grads["bias"] = as_xp(xp, [[gw]]), as_xp(xp, [gb])
        opt.step()
        return float(backend.to_numpy(layer.params["weight"])[0, 0]), float(backend.to_numpy(layer.params["bias"])[0])

    assert step(optim.AdamW(model, lr=0.1, weight_decay=0.5, eps=1e-300), 2.0, 2.0)[0] == pytest.approx(0.85, rel=1e-14)
    assert step(optim.Adam(model, lr=0.1, weight_decay=0.5, eps=1e-300), 2.0, 2.0)[0] == pytest.approx(0.9, rel=1e-14)
    w, b = step(optim.SGD(model, lr=1.0, clip_norm=1.0), 3.0, 4.0)
    assert (w, b) == (pytest.approx(1 - 3 / (5 + 1e-6), rel=1e-14), pytest.approx(1 - 4 / (5 + 1e-6), rel=1e-14))
    assert (w, b) == (pytest.approx(0.4, abs=1e-6), pytest.approx(0.2, abs=1e-6))
    assert step(optim.SGD(model, lr=1.0, clip_norm=10.0), 3.0, 4.0) == (-2.0, -3.0)


@pytest.mark.parametrize("name,clip_norm", [("adamw", None), ("adamw", 0.05), ("sgd", 0.05), ("adam", 0.1)])
def test_adamw_and_clipping_match_torch(name, clip_norm):
    """Five steps on the same gradients as torch.optim with torch.nn.utils.clip_grad_norm_."""
    torch = pytest.importorskip("torch")
    xp = backend.namespace("numpy")
    from netlab.config import OPTIMIZER_CONFIGS
    from netlab.torch_twin import torch_optimizer

    rng = np.random.default_rng(5)
    model = small_cnn().to(xp)
    twin = _torch_twin(model)
    hp = OPTIMIZER_CONFIGS[name](lr=0.01, weight_decay=0.1, clip_norm=clip_norm)
    opt, opt_t = optim.build(hp, model, 5), torch_optimizer(hp, twin.parameters())
    opt.schedule = optim.Constant()
    for _ in range(5):
        x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 10, 16).astype(np.int64)
        _, dlogits = losses.softmax_cross_entropy(model.forward(backend.from_numpy(xp, x)), backend.from_numpy(xp, y))
        model.backward(dlogits)
        for k, p in twin.named_parameters():
            p.grad = torch.from_numpy(backend.to_numpy(model.grads[k]).copy())
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(twin.parameters(), clip_norm)
        opt.step()
        opt_t.step()
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), atol=1e-5, err_msg=k)
