"""Every layer against finite differences (float64) on every backend, and against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from netlab import backend, nn
from conftest import as_xp, numeric_grad

rng = np.random.default_rng(0)


def check_layer(xp, layer, x_shape, atol=1e-6):
    """Compare backward() with central differences of L = sum(forward(x) * R) for x and params."""
    layer.to(xp, dtype=xp.float64)
    x_np = rng.standard_normal(x_shape)
    y = layer.forward(as_xp(xp, x_np))
    r_np = rng.standard_normal(tuple(y.shape))
    r = as_xp(xp, r_np)

    def loss():
        out = layer.forward(as_xp(xp, x_np))
        return float(backend.to_numpy(xp.sum(out * r)))

    loss()
    dx = backend.to_numpy(layer.backward(r))
    grads = {k: backend.to_numpy(v) for k, v in layer.grads.items()}
    np.testing.assert_allclose(dx, numeric_grad(loss, x_np), atol=atol, rtol=1e-5)
    for name in list(layer.params):
        p_np = backend.to_numpy(layer.params[name]).copy()

        def loss_p(name=name, p_np=p_np):
            layer.params[name] = as_xp(xp, p_np)
            return loss()

        expected = numeric_grad(loss_p, p_np)
        layer.params[name] = as_xp(xp, p_np)
        np.testing.assert_allclose(grads[name], expected, atol=atol, rtol=1e-5, err_msg=name)
    return y


def assert_same_namespace(xp, a):
    assert array_namespace(a).__name__ == array_namespace(xp.zeros(1)).__name__


@pytest.mark.parametrize("k,s,p,hw", [
    (1, 1, 0, (5, 4)), (3, 1, 1, (6, 5)), (3, 2, 0, (7, 6)), (5, 1, 2, (6, 7)),
    (5, 2, 2, (9, 8)), (3, 2, 1, (5, 9)), ((3, 2), (2, 1), (0, 1), (6, 5)),
])
def test_conv2d_gradients(xp, k, s, p, hw):
    layer = nn.Conv2d(2, 3, k, stride=s, padding=p)
    y = check_layer(xp, layer, (2, 2, *hw))
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (s, s) if isinstance(s, int) else s
    ph, pw = (p, p) if isinstance(p, int) else p
    assert tuple(y.shape) == (2, 3, (hw[0] + 2 * ph - kh) // sh + 1, (hw[1] + 2 * pw - kw) // sw + 1)
    assert_same_namespace(xp, y)


def test_conv2d_without_bias(xp):
    layer = nn.Conv2d(1, 2, 3, bias=False)
    check_layer(xp, layer, (2, 1, 5, 5))
    assert set(layer.grads) == {"weight"}


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
@pytest.mark.parametrize("k,s,p,hw", [
    (2, None, 0, (6, 4)), (2, None, 0, (7, 5)), (3, 2, 1, (7, 6)), (3, 1, 0, (5, 6)), (2, 1, 1, (4, 5)),
])
def test_pool_gradients(xp, pool, k, s, p, hw):
    y = check_layer(xp, pool(k, stride=s, padding=p), (2, 3, *hw))
    s = k if s is None else s
    assert tuple(y.shape) == (2, 3, (hw[0] + 2 * p - k) // s + 1, (hw[1] + 2 * p - k) // s + 1)
    assert_same_namespace(xp, y)


@pytest.mark.parametrize("stride", [None, 1])
def test_maxpool_ties_route_to_one_element(xp, stride):
    layer = nn.MaxPool2d(2, stride=stride).to(xp, dtype=xp.float64)
    x = xp.ones((1, 1, 4, 4), dtype=xp.float64)
    y = layer.forward(x)
    dx = backend.to_numpy(layer.backward(xp.ones(y.shape, dtype=xp.float64)))
    # the whole gradient survives (an equality mask would double-count it) ...
    assert dx.sum() == pytest.approx(float(np.prod(y.shape)))
    # ... and lands on the first element of each window
    if stride is None:
        np.testing.assert_array_equal(dx[0, 0], [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_linear_gradients(xp):
    y = check_layer(xp, nn.Linear(7, 4), (5, 7))
    assert tuple(y.shape) == (5, 4)
    assert_same_namespace(xp, y)


def test_relu_gradients(xp):
    check_layer(xp, nn.ReLU(), (3, 2, 4, 5))


def test_flatten_gradients(xp):
    y = check_layer(xp, nn.Flatten(), (3, 2, 4, 5))
    assert tuple(y.shape) == (3, 40)


@pytest.mark.parametrize("layer,shape", [
    (lambda: nn.BatchNorm2d(3), (4, 3, 3, 5)), (lambda: nn.BatchNorm1d(6), (8, 6)), (lambda: nn.BatchNorm1d(3), (4, 3, 5)),
])
def test_batchnorm_gradients_train_and_eval(xp, layer, shape):
    bn = layer()
    check_layer(xp, bn, shape, atol=1e-5)
    bn.eval()
    check_layer(xp, bn, shape, atol=1e-5)


def test_batchnorm_running_statistics(xp):
    bn = nn.BatchNorm2d(2).to(xp, dtype=xp.float64)
    x = rng.standard_normal((5, 2, 3, 3)) * 3 + 1
    bn.forward(as_xp(xp, x))
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(backend.to_numpy(bn.buffers["running_mean"]), 0.1 * mean)
    np.testing.assert_allclose(backend.to_numpy(bn.buffers["running_var"]), 0.9 + 0.1 * var)
    assert int(backend.to_numpy(bn.buffers["num_batches_tracked"])) == 1


def test_dropout_train_and_eval(xp):
    layer = nn.Dropout(0.25).to(xp, dtype=xp.float64)
    layer.set_rng(backend.Generator(3))
    x = xp.ones((200, 50), dtype=xp.float64)
    y = backend.to_numpy(layer.forward(x))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    dx = backend.to_numpy(layer.backward(xp.ones(x.shape, dtype=xp.float64)))
    np.testing.assert_array_equal(dx, y)
    layer.eval()
    assert np.all(backend.to_numpy(layer.forward(x)) == 1.0)


def test_dropout_rejects_bad_probability():
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.0)


def test_float32_stays_float32(xp):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    model.to(xp)
    y = model.forward(xp.ones((2, 1, 4, 4), dtype=xp.float32))
    assert y.dtype == xp.float32
    dx = model.backward(xp.ones(y.shape, dtype=xp.float32))
    assert dx.dtype == xp.float32
    assert all(g.dtype == xp.float32 for g in model.grads.values())


def test_sequential_container_protocol():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert len(model) == 3 and isinstance(model[1], nn.ReLU) and [type(m) for m in model][2] is nn.Linear
    assert list(model.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2


def test_state_dict_round_trip_and_strictness():
    a = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    state = a.state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                           "1.num_batches_tracked", "3.weight", "3.bias"]
    b.load_state_dict(state)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({k: v for k, v in state.items() if k != "3.bias"})
    bad = dict(state, **{"3.weight": np.zeros((3, 9), np.float32)})
    with pytest.raises(ValueError, match="shape mismatch"):
        b.load_state_dict(bad)


def test_init_is_seeded_and_bounded():
    nn.manual_seed(7)
    a = nn.Linear(100, 50).params["weight"]
    nn.manual_seed(7)
    b = nn.Linear(100, 50).params["weight"]
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    a = backend.to_numpy(a)
    assert np.abs(a).max() <= 0.1 and np.abs(a).max() > 0.099
    assert abs(a.std() - 0.1 / np.sqrt(3)) < 0.002  # std of U(-b, b) is b/sqrt(3)


def test_matmul_into_fast_path_matches_plain_matmul(xp):
    a = as_xp(xp, rng.standard_normal((5, 3)))
    b = as_xp(xp, rng.standard_normal((3, 7)))
    out = xp.empty((5, 7), dtype=xp.float64)
    fast = backend.matmul_into(xp, a, b, out)
    np.testing.assert_allclose(backend.to_numpy(fast), backend.to_numpy(a @ b), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(backend.matmul_into(xp, a, b)), backend.to_numpy(a @ b))


def test_conv_reuses_buffers_without_changing_results(xp):
    """Step-to-step buffer reuse (a fast path) gives what fresh buffers give, also after a
    forward pass of another batch size in between."""
    layer = nn.Conv2d(2, 3, 3, padding=1).to(xp, dtype=xp.float64)
    fresh = nn.Conv2d(2, 3, 3, padding=1).to(xp, dtype=xp.float64)
    fresh.load_state_dict(layer.state_dict())
    for n in (4, 4, 2, 4):
        x = as_xp(xp, rng.standard_normal((n, 2, 5, 6)))
        dy = as_xp(xp, rng.standard_normal((n, 3, 5, 6)))
        fresh._cols_buffer = fresh._dcols_buffer = None
        y, y_ref = layer.forward(x), fresh.forward(x)
        dx, dx_ref = layer.backward(dy), fresh.backward(dy)
        np.testing.assert_array_equal(backend.to_numpy(y), backend.to_numpy(y_ref))
        np.testing.assert_array_equal(backend.to_numpy(dx), backend.to_numpy(dx_ref))
        np.testing.assert_array_equal(backend.to_numpy(layer.grads["weight"]), backend.to_numpy(fresh.grads["weight"]))
