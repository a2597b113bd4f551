"""Every layer against finite differences (float64) on every backend, and against PyTorch
(float32) when it is installed, from one table of cases; then the layers' other promises."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from netlab import backend, losses, nn
from conftest import HAS_TORCH, as_xp, numeric_grad

TORCH_TOL = 1e-4


def _conv(k, s, p, bias=True, algorithm="auto"):
    return lambda: nn.Conv2d(2, 3, k, stride=s, padding=p, bias=bias, algorithm=algorithm)


# id -> (make the layer, input shape). Shapes are small: finite differences cost a forward
# pass per input element and parameter.
CASES = {
    "conv1x1": (_conv(1, 1, 0), (2, 2, 5, 4)),
    "conv3x3p1": (_conv(3, 1, 1), (2, 2, 6, 5)),
    "conv3x3s2": (_conv(3, 2, 0), (2, 2, 7, 6)),
    "conv5x5p2": (_conv(5, 1, 2), (2, 2, 6, 7)),
    "conv5x5s2p2": (_conv(5, 2, 2), (2, 2, 9, 8)),
    "conv3x3s2p1": (_conv(3, 2, 1), (2, 2, 5, 9)),
    "conv3x2s2x1p0x1": (_conv((3, 2), (2, 1), (0, 1)), (2, 2, 6, 5)),
    "conv_nobias": (_conv(3, 1, 0, bias=False), (2, 2, 5, 5)),
    # the FFT algorithm (stride 1): odd and even transform lengths, padding wider than usual,
    # a kernel longer than the image, and non-square everything
    "fft_conv1x1": (_conv(1, 1, 0, algorithm="fft"), (2, 2, 5, 4)),
    "fft_conv3x3p1": (_conv(3, 1, 1, algorithm="fft"), (2, 2, 6, 5)),
    "fft_conv5x5p2": (_conv(5, 1, 2, algorithm="fft"), (2, 2, 6, 7)),
    "fft_conv3x3p2": (_conv(3, 1, 2, algorithm="fft"), (2, 2, 4, 5)),
    "fft_conv5x5p2_1x3": (_conv(5, 1, 2, algorithm="fft"), (2, 2, 1, 3)),
    "fft_conv3x2p0x1": (_conv((3, 2), 1, (0, 1), algorithm="fft"), (2, 2, 6, 5)),
    "fft_conv_nobias": (_conv(3, 1, 0, bias=False, algorithm="fft"), (2, 2, 5, 5)),
    # padding past kernel - 1: the output is longer than image + padding
    "fft_conv1x1p1": (_conv(1, 1, 1, algorithm="fft"), (2, 2, 5, 4)),
    "fft_conv3x3p3": (_conv(3, 1, 3, algorithm="fft"), (2, 2, 4, 5)),
    "fft_conv1x3p2x4": (_conv((1, 3), 1, (2, 4), algorithm="fft"), (2, 2, 4, 6)),
    # Winograd F(2x2, 3x3): even and odd outputs (the last tile half outside), padding 0, 1, 2
    "winograd_p1": (_conv(3, 1, 1, algorithm="winograd"), (2, 2, 6, 5)),
    "winograd_p0": (_conv(3, 1, 0, algorithm="winograd"), (2, 2, 5, 6)),
    "winograd_p2_3x4": (_conv(3, 1, 2, algorithm="winograd"), (2, 2, 3, 4)),
    "winograd_p0x1": (_conv(3, 1, (0, 1), algorithm="winograd"), (2, 2, 7, 3)),
    "winograd_nobias": (_conv(3, 1, 1, bias=False, algorithm="winograd"), (2, 2, 4, 4)),
    **{f"{pool.__name__.lower()}{k}s{s}p{p}_{h}x{w}": (lambda pool=pool, k=k, s=s, p=p: pool(k, stride=s, padding=p),
                                                        (2, 3, h, w))
       for pool in (nn.MaxPool2d, nn.AvgPool2d)
       for k, s, p, (h, w) in ((2, None, 0, (6, 4)), (2, None, 0, (7, 5)), (3, 2, 1, (7, 6)), (3, 1, 0, (5, 6)),
                               (2, 1, 1, (4, 5)))},
    "linear": (lambda: nn.Linear(7, 4), (5, 7)),
    "linear_nobias": (lambda: nn.Linear(7, 4, bias=False), (5, 7)),
    "relu": (nn.ReLU, (3, 2, 4, 5)),
    "flatten": (nn.Flatten, (3, 2, 4, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 3, 5)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(6), (8, 6)),
    "batchnorm1d_ncl": (lambda: nn.BatchNorm1d(3), (4, 3, 5)),
    "tanh": (nn.Tanh, (3, 2, 4, 5)),
    "sigmoid": (nn.Sigmoid, (3, 2, 4, 5)),
    "gelu": (nn.GELU, (3, 2, 4, 5)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 2, 4, 5)),
    "global_avgpool": (nn.GlobalAvgPool2d, (3, 4, 3, 5)),
    # a residual block: its body plus the input itself, or plus a projection when the body changes the shape
    "residual_identity": (lambda: nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh(),
                                                             nn.Conv2d(2, 2, 3, padding=1, bias=False))), (2, 2, 5, 4)),
    "residual_projection": (lambda: nn.Residual(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(3, 3, 3, padding=1)),
        nn.Sequential(nn.Conv2d(2, 3, 1, stride=2, bias=False))), (2, 2, 6, 5)),
}
IDS = list(CASES)


def expected_shape(layer, x_shape):
    """The output shape by the textbook formula (not by running the layer)."""
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        channels = layer.out_channels if isinstance(layer, nn.Conv2d) else x_shape[1]
        return (x_shape[0], channels, (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1)
    if isinstance(layer, nn.Linear):
        return (x_shape[0], layer.out_features)
    if isinstance(layer, nn.Flatten):
        return (x_shape[0], int(np.prod(x_shape[1:])))
    if isinstance(layer, nn.GlobalAvgPool2d):
        return x_shape[:2]
    if isinstance(layer, nn.Residual):
        for inner in layer.body:
            x_shape = expected_shape(inner, x_shape)
    return x_shape


def check_gradients(xp, layer, x_shape, rng, atol=1e-6):
    """backward() against central differences of L = sum(forward(x) * R), for x and every parameter."""
    layer.to(xp, dtype=xp.float64)
    x_np = rng.standard_normal(x_shape)
    y = layer.forward(as_xp(xp, x_np))
    r = as_xp(xp, rng.standard_normal(tuple(y.shape)))

    def loss():
        return float(backend.to_numpy(xp.sum(layer.forward(as_xp(xp, x_np)) * r)))

    loss()
    dx = backend.to_numpy(layer.backward(r))
    grads = {k: backend.to_numpy(v) for k, v in layer.grads.items()}
    assert set(grads) == set(layer.params)
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


@pytest.mark.parametrize("case", IDS)
def test_layer_gradients(xp, case, rng):
    make, shape = CASES[case]
    layer = make()
    atol = 1e-5 if "batchnorm" in case else 1e-6
    y = check_gradients(xp, layer, shape, rng, atol)
    assert tuple(y.shape) == expected_shape(layer, shape)
    assert array_namespace(y).__name__ == array_namespace(xp.zeros(1)).__name__  # array type in = out
    if "batchnorm" in case:
        layer.eval()
        check_gradients(xp, layer, shape, rng, atol)


def torch_errors(xp, layer, x_shape, rng, train=True):
    """Largest differences of forward, dx and each parameter gradient from the torch twin (float32)."""
    import torch

    from netlab.torch_twin import torch_twin

    layer.to(xp)
    twin = torch_twin(layer).train(train)
    layer.train(train)
    x = rng.standard_normal(x_shape).astype(np.float32)
    y = layer.forward(backend.from_numpy(xp, x))
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    dx = layer.backward(backend.from_numpy(xp, dy))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    errors = {"forward": np.abs(backend.to_numpy(y) - yt.detach().numpy()).max(),
              "dx": np.abs(backend.to_numpy(dx) - xt.grad.numpy()).max()}
    for name, p in twin.named_parameters():
        errors[name] = np.abs(backend.to_numpy(layer.grads[name]) - p.grad.numpy()).max()
    return errors


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
@pytest.mark.parametrize("case", IDS)
def test_layer_matches_torch(xp, case, rng, record_property):
    make, shape = CASES[case]
    errors = torch_errors(xp, make(), shape, rng)
    record_property("max_abs_error", float(max(errors.values())))
    assert max(errors.values()) < TORCH_TOL, errors


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_batchnorm_eval_and_running_stats_match_torch(xp, rng):
    import torch

    from netlab.torch_twin import torch_twin

    bn = nn.BatchNorm2d(3).to(xp)
    twin = torch_twin(bn)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1
        bn.forward(backend.from_numpy(xp, x))
        twin(torch.from_numpy(x))
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[k], v.numpy(), atol=1e-5, err_msg=k)
    errors = torch_errors(xp, bn, (4, 3, 5, 5), rng, train=False)
    assert max(errors.values()) < TORCH_TOL, errors


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_lenet_loss_and_gradients_match_torch(xp, rng):
    import torch

    from netlab.torch_twin import torch_twin

    model = lenet().to(xp)
    twin = torch_twin(model)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int64)
    loss, dlogits = losses.softmax_cross_entropy(model.forward(backend.from_numpy(xp, x)), backend.from_numpy(xp, y))
    model.backward(dlogits)
    loss_t = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    assert abs(float(backend.to_numpy(loss)) - loss_t.item()) < TORCH_TOL
    for k, p in twin.named_parameters():
        np.testing.assert_allclose(backend.to_numpy(model.grads[k]), p.grad.numpy(), atol=TORCH_TOL, err_msg=k)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_weights_move_both_ways(rng):
    import torch

    from netlab.torch_twin import torch_twin

    model = lenet()
    twin = torch_twin(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in twin.parameters():  # new weights of a realistic scale, so logits stay O(1)
            p.normal_(0.0, 0.05)
    model.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(backend.to_numpy(model.forward(backend.from_numpy(model.xp, x))),
                               twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- layer details
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


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_maxpool_in_eval_mode_is_the_training_forward(xp, kernel, stride, padding):
    """Evaluating, MaxPool2d takes the maximum without tracking where it was: the same numbers,
    bit for bit, as the training forward (its plain twin), ties and padding included; and a
    backward after it routes each gradient to the same element."""
    x = backend.Generator(kernel + stride).normal(xp, (3, 2, 7, 6))
    x = xp.round(x * 2.0)  # whole and half numbers: many ties
    pool = nn.MaxPool2d(kernel, stride=stride, padding=padding).to(xp)
    trained = backend.to_numpy(pool.train().forward(x))
    dy = backend.Generator(9).normal(xp, tuple(trained.shape))
    dx = backend.to_numpy(pool.backward(dy))
    np.testing.assert_array_equal(backend.to_numpy(pool.eval().forward(x)), trained)
    np.testing.assert_array_equal(backend.to_numpy(pool.backward(dy)), dx)  # a saliency map in eval mode


@pytest.mark.parametrize("h,w", [(7, 7), (6, 7), (7, 6)])
def test_maxpool_gradient_is_zero_where_no_window_reaches(xp, h, w):
    """2x2 windows over odd sides leave the last row or column out (both, or one only, while
    the other side is covered): their gradient is zero, and every other element gets the
    gradient of the one window it belongs to."""
    x = backend.Generator(4).normal(xp, (2, 3, h, w))
    pool = nn.MaxPool2d(2).to(xp)
    for _ in range(2):  # the second backward may reuse memory the first one freed
        y = pool.forward(x)
        dx = backend.to_numpy(pool.backward(xp.ones(y.shape, dtype=y.dtype) * 7.0))
        assert (dx[..., 6:, :] == 0).all() and (dx[..., :, 6:] == 0).all()
        np.testing.assert_array_equal(dx[..., :6, :6].reshape(2, 3, 3, 2, 3, 2).sum(axis=(3, 5)), 7.0)


def test_maxpool_and_avgpool_values_by_hand(xp):
    x = as_xp(xp, np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(backend.to_numpy(nn.MaxPool2d(2).to(xp, dtype=xp.float64).forward(x))[0, 0],
                                  [[5, 7], [13, 15]])
    np.testing.assert_array_equal(backend.to_numpy(nn.AvgPool2d(2).to(xp, dtype=xp.float64).forward(x))[0, 0],
                                  [[2.5, 4.5], [10.5, 12.5]])


def test_conv_values_by_hand(xp):
    """A 2x2 kernel on a 3x3 image, computed on paper (cross-correlation, as PyTorch)."""
    conv = nn.Conv2d(1, 1, 2, bias=True).to(xp, dtype=xp.float64)
    conv.params["weight"] = as_xp(xp, [[[[1.0, 2.0], [3.0, 4.0]]]])
    conv.params["bias"] = as_xp(xp, [0.5])
    x = as_xp(xp, np.arange(9.0).reshape(1, 1, 3, 3))
    np.testing.assert_array_equal(backend.to_numpy(conv.forward(x))[0, 0], [[27.5, 37.5], [57.5, 67.5]])


def test_batchnorm_running_statistics(xp, rng):
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


# ---------------------------------------------------------------------------------- Sequential
def test_sequential_container_protocol():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert len(model) == 3 and isinstance(model[1], nn.ReLU) and [type(m) for m in model][2] is nn.Linear
    assert list(model.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2


def seed_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 7 * 7, 10))


def test_pool_before_relu_is_exactly_the_plain_network(xp):
    """The execution detail: ReLU, MaxPool2d pairs run as MaxPool2d, ReLU, bit for bit the same,
    while the model keeps the order it was given."""
    fast, plain = seed_cnn().to(xp), seed_cnn().to(xp)
    plain.pool_before_relu = False
    plain.load_state_dict(fast.state_dict())
    assert [type(m).__name__ for m in fast][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert "(1): ReLU()" in repr(fast) and "(2): MaxPool2d" in repr(fast)
    assert nn.sequential.execution_order(fast.layers) == [0, 2, 1, 3, 5, 4, 6, 7]
    assert nn.sequential.execution_order(fast.layers, pool_before_relu=False) == list(range(8))
    x = backend.Generator(0).normal(xp, (8, 1, 28, 28))
    ya, yb = fast.forward(x), plain.forward(x)
    np.testing.assert_array_equal(backend.to_numpy(ya), backend.to_numpy(yb))
    dy = backend.Generator(1).normal(xp, tuple(ya.shape))
    np.testing.assert_array_equal(backend.to_numpy(fast.backward(dy)), backend.to_numpy(plain.backward(dy)))
    for k, g in fast.grads.items():
        np.testing.assert_array_equal(backend.to_numpy(g), backend.to_numpy(plain.grads[k]), err_msg=k)


def test_no_input_gradient_gives_the_same_parameter_gradients(xp):
    """Training's backward(input_grad=False) skips only dL/dx: every parameter gradient,
    the first convolution's included, equals the full backward's."""
    a, b = seed_cnn().to(xp), seed_cnn().to(xp)
    b.load_state_dict(a.state_dict())
    x = backend.Generator(2).normal(xp, (4, 1, 28, 28))
    dy = backend.Generator(3).normal(xp, (4, 10))
    a.forward(x)
    b.forward(x)
    assert a.backward(dy, input_grad=False) is None
    assert b.backward(dy) is not None
    assert set(a.grads) == set(b.grads) == set(a.params)
    for k, g in a.grads.items():
        assert float(backend.to_numpy(xp.sum(g * g))) > 0, k
        np.testing.assert_array_equal(backend.to_numpy(g), backend.to_numpy(b.grads[k]), err_msg=k)


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


def test_fft_conv_matches_im2col_at_training_size(xp, rng):
    """The FFT fast path against its plain twin, im2col, on the seed CNN's second convolution
    in float32: forward, dL/dx and both parameter gradients, over two steps (the kernel
    spectrum is recomputed from the changed weights)."""
    fast = nn.Conv2d(16, 32, 5, padding=2, algorithm="fft").to(xp)
    plain = nn.Conv2d(16, 32, 5, padding=2, algorithm="im2col").to(xp)
    for step in range(2):
        plain.load_state_dict(fast.state_dict() if step == 0 else
                              {k: v * 1.5 for k, v in fast.state_dict().items()})
        fast.load_state_dict(plain.state_dict())
        x = backend.from_numpy(xp, rng.standard_normal((6, 16, 14, 14)).astype(np.float32))
        dy = backend.from_numpy(xp, rng.standard_normal((6, 32, 14, 14)).astype(np.float32))
        pairs = [(fast.forward(x), plain.forward(x)), (fast.backward(dy), plain.backward(dy))]
        pairs += [(fast.grads[k], plain.grads[k]) for k in ("weight", "bias")]
        for a, b in pairs:
            a, b = backend.to_numpy(a), backend.to_numpy(b)
            assert a.shape == b.shape and a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, atol=2e-5 * np.abs(b).max(), rtol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels,kernel,padding,shape", [
    ((16, 32), 5, 2, (6, 14, 14)),        # the seed CNN's second convolution: lengths 16
    ((2, 3), 3, 1, (4, 6, 5)),            # lengths 8 and 6, more channels out than in
    ((3, 2), (3, 2), (0, 1), (2, 7, 4)),  # non-square kernel and padding
    ((2, 2), 3, 3, (3, 4, 5)),            # padding past kernel - 1: outputs longer than image + padding
    ((2, 4), 5, 2, (2, 1, 3)),            # a kernel longer than the image
    ((1, 2), 1, 0, (2, 9, 9)),            # 1x1, no roll
])
def test_fft_conv_planar_products_match_the_twin(monkeypatch, rng, dtype, channels, kernel, padding, shape):
    """On NumPy, transforms up to dft.MAX_LENGTH run as real matrix products on planar spectra
    (nn/dft.py); the same layer through the twin (SciPy's FFT, nn/fft.py) must agree on the
    forward, dL/dx and both gradients, over two steps (the kernel blocks follow new weights),
    whether the input is the batch-last view the layers hand on or a plain NCHW array."""
    from netlab.nn import dft

    xp = backend.namespace("numpy")
    layer = nn.Conv2d(*channels, kernel, padding=padding, algorithm="fft").to(xp, dtype=getattr(xp, dtype))
    n = shape[0]
    tol = 2e-5 if dtype == "float32" else 1e-12
    for step in range(2):
        if step:
            layer.load_state_dict({k: v * 1.5 + 0.25 for k, v in layer.state_dict().items()})
        x_np = rng.standard_normal((n, channels[0], *shape[1:])).astype(dtype)
        x = x_np if step == 0 else np.ascontiguousarray(np.transpose(x_np, (1, 2, 3, 0))).transpose(3, 0, 1, 2)
        results = {}
        for path in ("planar", "twin"):
            if path == "twin":
                monkeypatch.setattr(dft, "fits", lambda *a: False)
            y = layer.forward(x)
            assert isinstance(layer.saved[1], dft.Cache) == (path == "planar")
            dy = np.random.default_rng(step).standard_normal(y.shape).astype(dtype)
            dx = layer.backward(dy)
            results[path] = [y.copy(), dx.copy()] + [layer.grads[k].copy() for k in sorted(layer.params)]
            monkeypatch.undo()
        for a, b in zip(results["planar"], results["twin"]):
            assert a.shape == b.shape and a.dtype == b.dtype == np.dtype(dtype)
            np.testing.assert_allclose(a, b, atol=tol * max(1.0, np.abs(b).max()), rtol=0)


def test_fft_conv_planar_path_is_taken_up_to_its_length_and_keeps_no_output(rng):
    """The planar path computes transforms of at most dft.MAX_LENGTH on NumPy (longer ones go to
    SciPy), and what it returns is fresh memory: its work arrays are reused from call to call
    (the layer's scratch), but an output or gradient handed out earlier never changes."""
    from netlab.nn import dft
    from netlab.nn.fft import fft_length

    layer = nn.Conv2d(2, 3, 5, padding=2, algorithm="fft")
    side = max(size for size in range(1, 2 * dft.MAX_LENGTH) if fft_length(size, 2, 5) <= dft.MAX_LENGTH)
    for size, planar in ((side, True), (side + 1, False)):
        layer.forward(rng.standard_normal((2, 2, size, size)).astype(np.float32))
        assert isinstance(layer.saved[1], dft.Cache) == planar
    x1, x2 = (rng.standard_normal((4, 2, 14, 14)).astype(np.float32) for _ in range(2))
    y1 = layer.forward(x1)
    dx1 = layer.backward(np.ones_like(y1))
    grads1 = {k: v.copy() for k, v in layer.grads.items()}
    kept = [y1.copy(), dx1.copy()]
    y2 = layer.forward(x2)
    layer.backward(y2)
    for before, now in zip(kept, (y1, dx1)):
        np.testing.assert_array_equal(before, now)
    assert not np.shares_memory(y1, y2)
    assert all(not np.array_equal(grads1[k], layer.grads[k]) for k in grads1)


def test_fft_conv_with_mixed_dtypes_takes_the_twin_and_promotes(rng):
    """float32 images into float64 weights: the planar path's ``matmul(out=)`` would cast the
    result down, so the layer takes the twin, which promotes as im2col does."""
    from netlab.nn import dft

    xp = backend.namespace("numpy")
    fast = nn.Conv2d(4, 3, 5, padding=2, algorithm="fft").to(xp, dtype=xp.float64)
    plain = nn.Conv2d(4, 3, 5, padding=2, algorithm="im2col").to(xp, dtype=xp.float64)
    plain.load_state_dict(fast.state_dict())
    x = rng.standard_normal((2, 4, 14, 14)).astype(np.float32)
    for layer in (fast, plain):
        y = layer.forward(x)
        layer.backward(np.ones_like(y))
        assert y.dtype == layer.grads["weight"].dtype == np.float64
    assert not isinstance(fast.saved[1], dft.Cache)
    np.testing.assert_allclose(fast.forward(x), plain.forward(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("algorithm,side", [("im2col", 12), ("winograd", 12), ("fft", 12), ("fft", 40)])
def test_conv_algorithms_take_an_empty_batch(xp, algorithm, side):
    """An empty batch (the tail of a split, a filter that kept nothing) gives empty outputs and
    input gradients and all-zero parameter gradients whatever the algorithm set; for the FFT at
    sizes of its planar path (12: lengths 16) and of its twin (40: past dft.MAX_LENGTH). The
    twin's reshapes took -1 for a batch of 0 and raised, and PyTorch's FFT refuses empty arrays
    (backend.rfftn and irfftn give zeros of the transform's shape instead)."""
    kernel = 3 if algorithm == "winograd" else 5
    layer = nn.Conv2d(4, 6, kernel, padding=kernel // 2, algorithm=algorithm).to(xp).train()
    x = xp.zeros((0, 4, side, side), dtype=xp.float32)
    y = layer.forward(x)
    dx = layer.backward(xp.zeros(y.shape, dtype=xp.float32))
    assert tuple(y.shape) == (0, 6, side, side) and tuple(dx.shape) == (0, 4, side, side)
    for name, grad in layer.grads.items():
        assert tuple(grad.shape) == tuple(layer.params[name].shape)
        assert not np.any(backend.to_numpy(grad))


def test_auto_picks_the_fft_only_where_it_was_measured_faster(rng):
    """auto: the FFT for stride-1 kernels of 5x5 and up over 4+ channels, on NumPy; im2col
    elsewhere (the first layer of MNIST nets, 3x3 kernels, strides, other backends)."""
    x = backend.from_numpy(backend.namespace("numpy"), rng.standard_normal((2, 16, 8, 8)).astype(np.float32))
    used = {}
    for name, layer in {"5x5 over 16": nn.Conv2d(16, 4, 5, padding=2), "3x3 over 16": nn.Conv2d(16, 4, 3),
                        "5x5 stride 2": nn.Conv2d(16, 4, 5, stride=2), "5x5 over 1": nn.Conv2d(1, 4, 5)}.items():
        layer.forward(x[:, :layer.in_channels, ...])
        used[name] = layer.impl.__name__.rsplit(".", 1)[-1]
    assert used == {"5x5 over 16": "fft", "3x3 over 16": "im2col", "5x5 stride 2": "im2col", "5x5 over 1": "im2col"}
    strict = backend.namespace("array_api_strict")
    layer = nn.Conv2d(16, 4, 5, padding=2).to(strict)
    layer.forward(backend.from_numpy(strict, backend.to_numpy(x)))
    assert layer.impl is nn.layers.CONV_ALGORITHMS["im2col"]


def test_an_algorithm_that_cannot_compute_a_layer_is_refused():
    with pytest.raises(ValueError, match="fft algorithm cannot compute.*stride"):
        nn.Conv2d(2, 3, 3, stride=2, algorithm="fft")
    with pytest.raises(ValueError, match="winograd algorithm cannot compute"):
        nn.Conv2d(2, 3, 5, algorithm="winograd")  # 3x3 kernels only
    with pytest.raises(ValueError, match="winograd algorithm cannot compute"):
        nn.Conv2d(2, 3, 3, stride=2, algorithm="winograd")
    with pytest.raises(Exception, match="unknown conv algorithm 'strassen'.*im2col, fft, winograd"):
        nn.Conv2d(2, 3, 3, algorithm="strassen")


def test_fft_lengths_are_5_smooth_and_long_enough():
    from netlab.nn.fft import fft_length

    assert [fft_length(14, 2, 5), fft_length(28, 2, 5), fft_length(1, 2, 5), fft_length(11, 0, 3)] == [16, 30, 5, 12]
    assert fft_length(5, 1, 1) == 8  # 7 output pixels: longer than image + padding
    for size in range(1, 40):
        for kernel in range(1, 8):
            for pad in range(7):
                out = size + 2 * pad - kernel + 1
                if out < 1:
                    continue
                n = fft_length(size, pad, kernel)
                assert n >= max(size + pad, kernel, out) and all(f in (2, 3, 5) for f in _factors(n))


def _factors(n):
    out, f = [], 2
    while n > 1:
        while n % f == 0:
            out.append(f)
            n //= f
        f += 1
    return out


def test_conv_scratch_reuse_matches_fresh_buffers(xp, rng):
    """The fast path (column matrices reused from step to step) against its plain twin that
    allocates afresh, also across batch sizes and a namespace change."""
    layer = nn.Conv2d(2, 3, 3, padding=1).to(xp, dtype=xp.float64)
    plain = nn.Conv2d(2, 3, 3, padding=1).to(xp, dtype=xp.float64)
    plain.scratch = backend.Scratch(reuse=False)
    plain.load_state_dict(layer.state_dict())
    for n in (4, 4, 2, 4):
        x = as_xp(xp, rng.standard_normal((n, 2, 5, 6)))
        dy = as_xp(xp, rng.standard_normal((n, 3, 5, 6)))
        y, y_ref = layer.forward(x), plain.forward(x)
        dx, dx_ref = layer.backward(dy), plain.backward(dy)
        np.testing.assert_array_equal(backend.to_numpy(y), backend.to_numpy(y_ref))
        np.testing.assert_array_equal(backend.to_numpy(dx), backend.to_numpy(dx_ref))
        np.testing.assert_array_equal(backend.to_numpy(layer.grads["weight"]), backend.to_numpy(plain.grads["weight"]))
    strict = backend.namespace("array_api_strict")
    layer.to(strict, dtype=strict.float64)  # the old buffers belong to another namespace
    x = as_xp(strict, rng.standard_normal((2, 2, 5, 6)))
    assert array_namespace(layer.forward(x)) is array_namespace(x)


# ------------------------------------------------ against the naive references (tests/references.py)
# The gradient checks above prove that backward matches forward; these prove that forward (and
# so backward) computes what the layer's definition says, with no PyTorch: every layer against a
# loop-per-definition float64 NumPy reference, on every backend, with padding square and not,
# strides above 1, negative inputs and non-unit affine parameters and statistics.
import references as R  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# deterministic and quick: the same examples on every run, no example database
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REF_TOL = dict(rtol=1e-9, atol=1e-11)


def ref_forward(layer, state, x, masks, prefix=""):
    """The reference output of ``layer`` (read from ``state``, its state_dict before the forward
    pass) for ``x``, and ``backward(dy) -> (dx, {state key: gradient})``. Containers run their
    layers in the order given: the reference knows nothing of execution details."""
    def p(name):
        return state[prefix + name]

    if isinstance(layer, nn.Residual):
        y_body, back_body = ref_forward(layer.body, state, x, masks, prefix + "body.")
        if layer.projection is None:
            y_skip, back_skip = x, lambda dy: (dy, {})
        else:
            y_skip, back_skip = ref_forward(layer.projection, state, x, masks, prefix + "projection.")

        def back(dy):
            (dx_body, g_body), (dx_skip, g_skip) = back_body(dy), back_skip(dy)
            return dx_body + dx_skip, {**g_body, **g_skip}
        return y_body + y_skip, back
    if isinstance(layer, nn.Sequential):
        backs = []
        for i, child in enumerate(layer.layers):
            x, b = ref_forward(child, state, x, masks, f"{prefix}{i}.")
            backs.append(b)

        def back(dy):
            grads = {}
            for b in reversed(backs):
                dy, g = b(dy)
                grads.update(g)
            return dy, grads
        return x, back
    has_bias = prefix + "bias" in state
    if isinstance(layer, nn.Conv2d):
        w, b = p("weight"), state.get(prefix + "bias")

        def back(dy):
            dx, dw, db = R.conv2d_backward(x, w, dy, layer.stride, layer.padding)
            return dx, {prefix + "weight": dw, **({prefix + "bias": db} if has_bias else {})}
        return R.conv2d(x, w, b, layer.stride, layer.padding), back
    if isinstance(layer, nn.Linear):
        w, b = p("weight"), state.get(prefix + "bias")

        def back(dy):
            dx, dw, db = R.linear_backward(x, w, dy)
            return dx, {prefix + "weight": dw, **({prefix + "bias": db} if has_bias else {})}
        return R.linear(x, w, b), back
    if isinstance(layer, nn.MaxPool2d):
        k, s, pad = layer.kernel_size, layer.stride, layer.padding
        return R.maxpool2d(x, k, s, pad), lambda dy: (R.maxpool2d_backward(x, dy, k, s, pad), {})
    if isinstance(layer, nn.AvgPool2d):
        k, s, pad = layer.kernel_size, layer.stride, layer.padding
        return R.avgpool2d(x, k, s, pad), lambda dy: (R.avgpool2d_backward(x, dy, k, s, pad), {})
    if isinstance(layer, nn.GlobalAvgPool2d):
        return R.global_avgpool2d(x), lambda dy: (R.global_avgpool2d_backward(x, dy), {})
    if isinstance(layer, nn.Flatten):
        return R.flatten(x), lambda dy: (R.flatten_backward(x.shape, dy), {})
    if isinstance(layer, nn.LeakyReLU):
        a = layer.negative_slope
        return R.leaky_relu(x, a), lambda dy: (R.leaky_relu_backward(x, dy, a), {})
    if isinstance(layer, nn.Dropout):
        if not layer.training:
            return x, lambda dy: (dy, {})
        keep = masks[id(layer)]
        return R.dropout(x, keep, layer.p), lambda dy: (R.dropout_backward(dy, keep, layer.p), {})
    if isinstance(layer, nn.layers._BatchNorm):
        gamma, beta, rm, rv = p("weight"), p("bias"), p("running_mean"), p("running_var")
        kw = dict(training=layer.training, eps=layer.eps)
        y, new_mean, new_var = R.batchnorm(x, gamma, beta, rm, rv, momentum=layer.momentum, **kw)
        masks[("running", prefix)] = (new_mean, new_var)

        def back(dy):
            dx, dgamma, dbeta = R.batchnorm_backward(x, gamma, dy, rm, rv, **kw)
            return dx, {prefix + "weight": dgamma, prefix + "bias": dbeta}
        return y, back
    simple = {nn.ReLU: (R.relu, R.relu_backward), nn.Tanh: (R.tanh, R.tanh_backward),
              nn.Sigmoid: (R.sigmoid, R.sigmoid_backward), nn.GELU: (R.gelu, R.gelu_backward)}
    forward, backward = simple[type(layer)]
    return forward(x), lambda dy: (backward(x, dy), {})


class FixedUniform:
    """A stand-in generator whose ``random`` hands out given uniform numbers: dropout's mask is then known."""

    def __init__(self, rng):
        self.rng, self.drawn = rng, []

    def random(self, xp, shape, dtype=None, device=None):
        u = self.rng.uniform(0.0, 1.0, tuple(shape))
        self.drawn.append(u)
        return backend.from_numpy(xp, u, dtype=dtype)


def randomize(layer, rng) -> dict:
    """Give every parameter and statistic random values, none of them 1 or 0 (non-unit gamma and
    beta, running statistics away from their initial 0 and 1); returns the state_dict set."""
    state = {}
    for k, v in layer.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = rng.uniform(0.3, 3.0, v.shape)
        else:  # weights (gamma too: both signs, never 1), biases (beta), running means
            state[k] = rng.standard_normal(v.shape) * 0.9 + 0.2
    layer.load_state_dict(state)
    return state


def compare_with_reference(xp, layer, x_np, rng, training=True):
    """Run ``layer`` (float64 on ``xp``) and the reference on ``x_np`` with the same random
    upstream gradient; compare the output, dx, every parameter gradient and the running statistics."""
    layer.to(xp, dtype=xp.float64)
    layer.train(training)
    state = randomize(layer, rng)
    uniform = FixedUniform(rng)
    dropouts = [m for m in _modules(layer) if isinstance(m, nn.Dropout)]
    for m in dropouts:
        m.set_rng(uniform)
    y = layer.forward(as_xp(xp, x_np))
    masks = {}
    if training:
        for m, u in zip(dropouts, uniform.drawn, strict=True):
            masks[id(m)] = (u >= m.p).astype(np.float64)  # dropped with probability p: u < p
    y_ref, back = ref_forward(layer, state, x_np, masks)
    np.testing.assert_allclose(backend.to_numpy(y), y_ref, **REF_TOL, err_msg="forward")
    dy = rng.standard_normal(y_ref.shape)
    dx = layer.backward(as_xp(xp, dy))
    dx_ref, grads_ref = back(dy)
    np.testing.assert_allclose(backend.to_numpy(dx), dx_ref, **REF_TOL, err_msg="dx")
    grads = {k: backend.to_numpy(v) for k, v in layer.grads.items()}
    assert set(grads) == set(grads_ref) == {k for k in state if not k.endswith(("running_mean", "running_var",
                                                                               "num_batches_tracked"))}
    for k, g in grads_ref.items():
        np.testing.assert_allclose(grads[k], g, **REF_TOL, err_msg=k)
    after = layer.state_dict()
    for key, (mean, var) in ((k[1], v) for k, v in masks.items() if isinstance(k, tuple)):
        if training:
            np.testing.assert_allclose(after[key + "running_mean"], mean, **REF_TOL)
            np.testing.assert_allclose(after[key + "running_var"], var, **REF_TOL)
        else:  # evaluation leaves the statistics alone
            np.testing.assert_array_equal(after[key + "running_mean"], state[key + "running_mean"])


def _modules(layer):
    if isinstance(layer, nn.sequential.Container):
        for _, child in layer.named_children():
            yield from _modules(child)
    else:
        yield layer


def _conv_case(c, o, k, s, p, shape, algorithm="im2col", bias=True):
    return lambda: nn.Conv2d(c, o, k, stride=s, padding=p, bias=bias, algorithm=algorithm), shape


# id -> (make the layer, input shape, training mode). Inputs are N(0, 2^2) shifted by -1:
# mostly negative, so that what padding counts as (zero or minus infinity) shows.
REF_CASES = {
    "conv3x3s1p1": _conv_case(2, 3, 3, 1, 1, (2, 2, 5, 6)),
    "conv3x3s2p1x0": _conv_case(2, 3, 3, 2, (1, 0), (2, 2, 7, 6)),
    "conv2x3s2x1p0x2": _conv_case(3, 2, (2, 3), (2, 1), (0, 2), (2, 3, 6, 5)),
    "conv3x2s1x3p2x1": _conv_case(2, 2, (3, 2), (1, 3), (2, 1), (1, 2, 4, 8)),
    "conv5x5s2p2_nobias": _conv_case(2, 2, 5, 2, 2, (2, 2, 7, 8), bias=False),
    "conv1x1s2": _conv_case(3, 2, 1, 2, 0, (2, 3, 5, 4)),
    "fft_conv3x3p0x2": _conv_case(2, 3, 3, 1, (0, 2), (2, 2, 6, 5), "fft"),
    "fft_conv2x4p1x3": _conv_case(2, 2, (2, 4), 1, (1, 3), (2, 2, 5, 4), "fft"),
    "winograd_conv3x3p1x0": _conv_case(2, 3, 3, 1, (1, 0), (2, 2, 5, 6), "winograd"),
    "winograd_conv3x3p2": _conv_case(2, 2, 3, 1, 2, (1, 2, 4, 3), "winograd"),
    "maxpool2": (lambda: nn.MaxPool2d(2), (2, 3, 6, 4)),
    "maxpool3s2p1": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "maxpool3x2s1x2p1x0": (lambda: nn.MaxPool2d((3, 2), stride=(1, 2), padding=(1, 0)), (2, 2, 5, 6)),
    "maxpool2x4s2x1p0x2": (lambda: nn.MaxPool2d((2, 4), stride=(2, 1), padding=(0, 2)), (1, 2, 6, 5)),
    "avgpool2": (lambda: nn.AvgPool2d(2), (2, 3, 6, 4)),
    "avgpool3s2p1": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "avgpool3x2s1x2p1x0": (lambda: nn.AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)), (2, 2, 5, 6)),
    "avgpool2x4s2x1p0x2": (lambda: nn.AvgPool2d((2, 4), stride=(2, 1), padding=(0, 2)), (1, 2, 6, 5)),
    "relu": (nn.ReLU, (2, 3, 4, 5)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.3), (2, 3, 4, 5)),
    "tanh": (nn.Tanh, (2, 3, 4, 5)),
    "sigmoid": (nn.Sigmoid, (2, 3, 4, 5)),
    "gelu": (nn.GELU, (2, 3, 4, 5)),
    "flatten": (nn.Flatten, (2, 3, 4, 5)),
    "linear": (lambda: nn.Linear(6, 4), (5, 6)),
    "linear_nobias": (lambda: nn.Linear(6, 3, bias=False), (4, 6)),
    "dropout": (lambda: nn.Dropout(0.3), (4, 3, 2, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 3, 2)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(4), (6, 4)),
    "batchnorm1d_ncl": (lambda: nn.BatchNorm1d(3, eps=1e-3, momentum=0.3), (4, 3, 5)),
    "global_avgpool": (nn.GlobalAvgPool2d, (2, 3, 4, 5)),
    "residual_identity": (lambda: nn.Residual(nn.Sequential(
        nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, (3, 1), padding=(1, 0)))),
        (2, 2, 5, 4)),
    "residual_projection": (lambda: nn.Residual(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=(1, 0)), nn.GELU(), nn.Conv2d(3, 3, 1)),
        nn.Sequential(nn.Conv2d(2, 3, (1, 3), stride=2, bias=False), nn.BatchNorm2d(3))),
        (2, 2, 6, 5)),
    # a whole small network: the pool-before-ReLU execution order, flatten after a convolution
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=(1, 2)), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(3, 2, 2, stride=(1, 2)), nn.LeakyReLU(0.1), nn.Flatten(),
                                  nn.Dropout(0.4), nn.Linear(2 * 1 * 2, 3)), (3, 1, 5, 6)),
}


def _input(rng, shape):
    return rng.standard_normal(shape) * 2.0 - 1.0


def _modes(case):
    """Training only, or both modes for the layers that differ in evaluation (dropout, batch norm)."""
    try:
        modal = any(isinstance(m, (nn.Dropout, nn.layers._BatchNorm)) for m in _modules(REF_CASES[case][0]()))
    except Exception:  # a layer that cannot be built: the test itself says so, in both modes
        modal = True
    return [pytest.param(case, True, id=f"{case}-train")] + ([pytest.param(case, False, id=f"{case}-eval")] if modal else [])


@pytest.mark.parametrize("case,training", [p for case in REF_CASES for p in _modes(case)])
def test_layer_matches_the_naive_reference(xp, case, training, rng):
    make, shape = REF_CASES[case]
    compare_with_reference(xp, make(), _input(rng, shape), rng, training)


NP = backend.namespace("numpy")


@st.composite
def conv_settings(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh)), draw(st.integers(0, kw))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    algorithms = ["im2col"] + (["fft"] if (sh, sw) == (1, 1) else []) \
        + (["winograd"] if (sh, sw) == (1, 1) and (kh, kw) == (3, 3) else [])
    return dict(kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), hw=(h, w), algorithm=draw(st.sampled_from(algorithms)),
                n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), o=draw(st.integers(1, 3)),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


@PROPERTY
@given(conv_settings())
def test_conv_matches_the_reference_for_any_kernel_stride_and_padding(s):
    rng = np.random.default_rng(s["seed"])
    layer = nn.Conv2d(s["c"], s["o"], s["kernel"], stride=s["stride"], padding=s["padding"], bias=s["bias"],
                      algorithm=s["algorithm"])
    compare_with_reference(NP, layer, _input(rng, (s["n"], s["c"], *s["hw"])), rng)


@PROPERTY
@given(conv_settings())
def test_phase_planes_give_the_windowed_columns_and_their_adjoint(s):
    """The layer's im2col reads windows of the stride's phase planes (nn/im2col.py); the plain
    twin slices the padded input with the stride. Same column matrix, bit for bit, and the same
    dx from any columns (the phases' col2im, cropped the twin's way), for any kernel, stride,
    padding and size, in the namespace the layers use and in the strict one."""
    from netlab.nn import im2col as ic

    rng = np.random.default_rng(s["seed"])
    (kh, kw), (sh, sw), (ph, pw), (h, w) = s["kernel"], s["stride"], s["padding"], s["hw"]
    out_h, out_w = ic.conv_outsize(h, kh, sh, ph), ic.conv_outsize(w, kw, sw, pw)
    x_np = rng.standard_normal((s["c"], h, w, s["n"]))
    dcols_np = rng.standard_normal((s["c"] * kh * kw, out_h * out_w * s["n"]))
    for xp in (NP, backend.namespace("array_api_strict")):
        x, dcols = backend.from_numpy(xp, x_np), backend.from_numpy(xp, dcols_np)
        planes = ic.split_phases(xp, x, sh, sw, ph, pw)
        np.testing.assert_array_equal(backend.to_numpy(ic.phase_im2col(xp, planes, kh, kw, sh, sw, out_h, out_w)),
                                      backend.to_numpy(ic.im2col(xp, ic.pad(xp, x, ph, pw), kh, kw, sh, sw, out_h, out_w)))
        dx = ic.phase_col2im(xp, dcols, x.shape, kh, kw, sh, sw, ph, pw, out_h, out_w)
        padded = ic.col2im(xp, dcols, (s["c"], h + 2 * ph, w + 2 * pw, s["n"]), kh, kw, sh, sw, out_h, out_w)
        np.testing.assert_array_equal(backend.to_numpy(dx), backend.to_numpy(padded)[:, ph:ph + h, pw:pw + w, :])


def test_phase_planes_of_a_stride_2_image_by_hand():
    """A 1-channel 3x4 image padded by 1 and split by stride 2: plane (a, b) holds the padded
    positions a::2, b::2, so the image's (0, 0) pixel lands in plane (1, 1) at (0, 0)."""
    from netlab.nn import im2col as ic

    x = np.arange(1.0, 13.0).reshape(1, 3, 4, 1)  # (C, H, W, N)
    planes = ic.split_phases(NP, x, 2, 2, 1, 1)[..., 0]  # (2, 2, C, Hu, Wv)
    padded = np.pad(x[0, ..., 0], 1)  # 5 x 6
    assert planes.shape == (2, 2, 1, 3, 3)
    for a in range(2):
        for b in range(2):
            part = padded[a::2, b::2]
            np.testing.assert_array_equal(planes[a, b, 0, :part.shape[0], :part.shape[1]], part)
            assert not planes[a, b, 0, part.shape[0]:].any() and not planes[a, b, 0, :, part.shape[1]:].any()
    assert planes[1, 1, 0, 0, 0] == 1.0 and planes[0, 0, 0, 1, 1] == 6.0


@st.composite
def pool_settings(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return dict(kind=draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d])), kernel=(kh, kw), stride=stride,
                padding=(ph, pw), hw=(h, w), n=draw(st.integers(1, 2)), c=draw(st.integers(1, 2)),
                shift=draw(st.sampled_from([-5.0, 0.0, 5.0])), seed=draw(st.integers(0, 2 ** 16)))


@PROPERTY
@given(pool_settings())
def test_pools_match_the_reference_for_any_window_stride_and_padding(s):
    rng = np.random.default_rng(s["seed"])
    layer = s["kind"](s["kernel"], stride=s["stride"], padding=s["padding"])
    compare_with_reference(NP, layer, rng.standard_normal((s["n"], s["c"], *s["hw"])) + s["shift"], rng)


@PROPERTY
@given(st.sampled_from(["2d", "1d", "1d_ncl"]), st.integers(1, 3), st.integers(2, 5), st.integers(1, 3),
       st.booleans(), st.sampled_from([1e-5, 1e-2, 0.5]), st.sampled_from([0.1, 0.5, 0.9]), st.integers(0, 2 ** 16))
def test_batchnorm_matches_the_reference_for_any_shape_mode_and_affine(kind, c, n, side, training, eps, momentum, seed):
    rng = np.random.default_rng(seed)
    layer, shape = {"2d": (nn.BatchNorm2d(c, eps, momentum), (n, c, side, side + 1)),
                    "1d": (nn.BatchNorm1d(c, eps, momentum), (n, c)),
                    "1d_ncl": (nn.BatchNorm1d(c, eps, momentum), (n, c, side))}[kind]
    compare_with_reference(NP, layer, rng.standard_normal(shape) * 3.0 + 2.0, rng, training)


@PROPERTY
@given(st.sampled_from(["relu", "leaky", "tanh", "sigmoid", "gelu", "flatten", "global", "linear", "dropout"]),
       st.floats(0.01, 0.9), st.sampled_from([0.5, 3.0, 30.0]), st.tuples(st.integers(1, 3), st.integers(1, 3),
                                                                            st.integers(1, 4), st.integers(1, 4)),
       st.integers(0, 2 ** 16))
def test_elementwise_and_reshaping_layers_match_the_reference(kind, a, scale, shape, seed):
    """Any shape, any slope or dropout probability, inputs up to +-100 (the sigmoid's two branches)."""
    rng = np.random.default_rng(seed)
    layer = {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(a), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
             "gelu": nn.GELU(), "flatten": nn.Flatten(), "global": nn.GlobalAvgPool2d(),
             "linear": nn.Linear(shape[1], shape[2]), "dropout": nn.Dropout(a)}[kind]
    x_shape = shape[:2] if kind == "linear" else shape
    compare_with_reference(NP, layer, rng.standard_normal(x_shape) * scale, rng)


# ------------------------------------------------------------------ golden values, worked by hand
def _run(xp, layer, x, dy):
    layer.to(xp, dtype=xp.float64)
    y = layer.forward(as_xp(xp, x))
    dx = layer.backward(as_xp(xp, dy))
    return backend.to_numpy(y), backend.to_numpy(dx)


def test_maxpool_padding_is_minus_infinity_by_hand(xp):
    """MaxPool2d(2, stride=1, padding=1) on [[-1, -2], [-3, -4]]: each of the 3x3 windows holds
    one to four real pixels and the rest padding, which never wins (zero padding would give 0
    everywhere). Window maxima, row by row: TL -1; T max(-1,-2) = -1; TR -2; L max(-1,-3) = -1;
    centre max(all) = -1; R max(-2,-4) = -2; BL -3; B max(-3,-4) = -3; BR -4.
    Backward of ones: -1 wins 4 windows, -2 and -3 two each, -4 one."""
    y, dx = _run(xp, nn.MaxPool2d(2, stride=1, padding=1), [[[[-1.0, -2.0], [-3.0, -4.0]]]], np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])
    np.testing.assert_array_equal(dx[0, 0], [[4, 2], [2, 1]])


def test_avgpool_padding_counts_towards_the_mean_by_hand(xp):
    """AvgPool2d(2, stride=1, padding=1) on [[1, 2], [3, 4]]: every window sums its real pixels
    and divides by 4. TL 1/4; T (1+2)/4; TR 2/4; L (1+3)/4; centre 10/4; R (2+4)/4; BL 3/4;
    B (3+4)/4; BR 4/4. Backward of ones: each pixel is in 4 windows, 1/4 from each."""
    y, dx = _run(xp, nn.AvgPool2d(2, stride=1, padding=1), [[[[1.0, 2.0], [3.0, 4.0]]]], np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(y[0, 0], [[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]])
    np.testing.assert_array_equal(dx[0, 0], np.ones((2, 2)))


def test_strided_conv_with_non_square_padding_by_hand(xp):
    """Conv2d 2x2, stride 2, padding (0, 1) on x = [[0,1,2],[3,4,5],[6,7,8]], w = [[1,2],[3,4]], b = 0.5.
    Padded x (a zero column each side): [[0,0,1,2,0],[0,3,4,5,0],[0,6,7,8,0]]; out 1x2:
      (0,0): window [[0,0],[0,3]] -> 0*1 + 0*2 + 0*3 + 3*4 + 0.5 = 12.5
      (0,1): window [[1,2],[4,5]] -> 1*1 + 2*2 + 4*3 + 5*4 + 0.5 = 37.5
    Backward of dy = [[1, 1]]: dw = sum of the two windows = [[1,2],[4,8]]; db = 2; each pixel
    gets the tap that saw it: row 0 -> [2, 1, 2], row 1 -> [4, 3, 4], row 2 unseen -> 0.
    Padding (1, 0) instead would give a 2x1 output."""
    conv = nn.Conv2d(1, 1, 2, stride=2, padding=(0, 1)).to(xp, dtype=xp.float64)
    conv.load_state_dict({"weight": np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), "bias": np.array([0.5])})
    y, dx = _run(xp, conv, np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 1, 2)))
    np.testing.assert_array_equal(y, [[[[12.5, 37.5]]]])
    np.testing.assert_array_equal(dx[0, 0], [[2, 1, 2], [4, 3, 4], [0, 0, 0]])
    np.testing.assert_array_equal(backend.to_numpy(conv.grads["weight"])[0, 0], [[1, 2], [4, 8]])
    assert float(backend.to_numpy(conv.grads["bias"])[0]) == 2.0


def test_batchnorm_with_non_unit_gamma_by_hand(xp):
    """BatchNorm1d(1, eps=0) on x = [1, 1, 3, 3], gamma 2, beta 0.5: mean 2, variance 1,
    xhat = [-1, -1, 1, 1], y = 2 xhat + 0.5 = [-1.5, -1.5, 2.5, 2.5].
    Backward of dy = [1, 0, 0, 0]: dbeta = 1; dgamma = sum dy xhat = -1; dxhat = 2 dy = [2, 0, 0, 0],
    mean(dxhat) = 0.5, mean(dxhat xhat) = -0.5, dx = dxhat - 0.5 + 0.5 xhat = [1, -1, 0, 0].
    In evaluation with running mean 1 and variance 4: y(3) = 2 (3 - 1) / 2 + 0.5 = 2.5, dx = dy 2 / 2."""
    bn = nn.BatchNorm1d(1, eps=0.0).to(xp, dtype=xp.float64)
    bn.load_state_dict({"weight": np.array([2.0]), "bias": np.array([0.5]), "running_mean": np.array([1.0]),
                        "running_var": np.array([4.0]), "num_batches_tracked": np.array(0)})
    x, dy = np.array([[1.0], [1.0], [3.0], [3.0]]), np.array([[1.0], [0.0], [0.0], [0.0]])
    y, dx = _run(xp, bn, x, dy)
    np.testing.assert_array_equal(y[:, 0], [-1.5, -1.5, 2.5, 2.5])
    np.testing.assert_array_equal(dx[:, 0], [1, -1, 0, 0])
    assert float(backend.to_numpy(bn.grads["weight"])[0]) == -1.0
    assert float(backend.to_numpy(bn.grads["bias"])[0]) == 1.0
    bn.load_state_dict({**bn.state_dict(), "running_mean": np.array([1.0]), "running_var": np.array([4.0])})
    bn.eval()
    y, dx = _run(xp, bn, np.array([[3.0]]), np.array([[3.0]]))
    assert (float(y[0, 0]), float(dx[0, 0])) == (2.5, 3.0)


def test_flatten_order_and_activations_by_hand(xp):
    """Flatten of arange(12) shaped (1, 2, 2, 3) reads channel, then row, then column: arange(12)
    again (channels last would give 0, 6, 1, 7, ...). At 0: GELU 0 with slope 0.5 (0.5 (1 + tanh 0));
    sigmoid 1/2 with slope 1/4; tanh 0 with slope 1. LeakyReLU(0.1): -2 -> -0.2 (slope 0.1), 3 -> 3."""
    y, dx = _run(xp, nn.Flatten(), np.arange(12.0).reshape(1, 2, 2, 3), np.arange(12.0).reshape(1, 12) * 10)
    np.testing.assert_array_equal(y[0], np.arange(12.0))
    np.testing.assert_array_equal(dx.reshape(-1), np.arange(12.0) * 10)
    zero, one = np.zeros((1, 1)), np.ones((1, 1))
    assert [tuple(float(a[0, 0]) for a in _run(xp, layer, zero, one)) for layer in (nn.GELU(), nn.Sigmoid(), nn.Tanh())] \
        == [(0.0, 0.5), (0.5, 0.25), (0.0, 1.0)]
    y, dx = _run(xp, nn.LeakyReLU(0.1), [[-2.0, 3.0]], [[1.0, 1.0]])
    np.testing.assert_allclose(y, [[-0.2, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(dx, [[0.1, 1.0]], rtol=1e-15)
