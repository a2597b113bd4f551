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
    with pytest.raises(Exception, match="unknown conv algorithm 'winograd'.*im2col, fft"):
        nn.Conv2d(2, 3, 3, algorithm="winograd")


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
