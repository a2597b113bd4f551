"""netlab against PyTorch (when installed): layers, a LeNet-like net, and every optimizer.

Reference values are float32, as users run them; tolerances are the issue's 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from netlab import backend, losses, nn, optim
from netlab.bench import torch_twin as to_torch

torch = pytest.importorskip("torch")
TOL = 1e-4
rng = np.random.default_rng(1)


def compare(xp, layer, x_shape, train=True):
    """Forward, input gradient and parameter gradients of ``layer`` against its torch twin."""
    layer.to(xp)
    twin = to_torch(layer).train(train)
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
    grads = layer.grads
    for name, p in twin.named_parameters():
        errors[name] = np.abs(backend.to_numpy(grads[name]) - p.grad.numpy()).max()
    return errors


LAYERS = [
    ("conv5x5p2", lambda: nn.Conv2d(3, 8, 5, padding=2), (4, 3, 12, 10)),
    ("conv3x3s2p1", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (4, 3, 11, 9)),
    ("conv1x1", lambda: nn.Conv2d(3, 5, 1), (2, 3, 6, 7)),
    ("maxpool2", lambda: nn.MaxPool2d(2), (4, 3, 8, 9)),
    ("maxpool3s2p1", lambda: nn.MaxPool2d(3, 2, 1), (4, 3, 9, 8)),
    ("avgpool2", lambda: nn.AvgPool2d(2), (4, 3, 8, 9)),
    ("avgpool3s2p1", lambda: nn.AvgPool2d(3, 2, 1), (4, 3, 9, 8)),
    ("linear", lambda: nn.Linear(20, 7), (6, 20)),
    ("relu", lambda: nn.ReLU(), (4, 3, 5, 5)),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3), (4, 3, 5, 6)),
    ("batchnorm1d", lambda: nn.BatchNorm1d(7), (8, 7)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[l[0] for l in LAYERS])
def test_layer_matches_torch(xp, name, make, shape, record_property):
    errors = compare(xp, make(), shape)
    record_property("max_abs_error", float(max(errors.values())))
    assert max(errors.values()) < TOL, errors


def test_batchnorm_eval_and_running_stats_match_torch(xp):
    bn = nn.BatchNorm2d(3)
    bn.to(xp)
    twin = to_torch(bn)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1
        bn.forward(backend.from_numpy(xp, x))
        twin(torch.from_numpy(x))
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[k], v.numpy(), atol=1e-5, err_msg=k)
    errors = compare(xp, bn, (4, 3, 5, 5), train=False)
    assert max(errors.values()) < TOL, errors


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def batch(n=16):
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def test_lenet_loss_and_gradients_match_torch(xp):
    model = lenet().to(xp)
    twin = to_torch(model)
    x, y = batch()
    logits = model.forward(backend.from_numpy(xp, x))
    loss, dlogits = losses.softmax_cross_entropy(logits, backend.from_numpy(xp, y))
    model.backward(dlogits)
    loss_t = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    assert abs(float(backend.to_numpy(loss)) - loss_t.item()) < TOL
    grads = model.grads
    for k, p in twin.named_parameters():
        np.testing.assert_allclose(backend.to_numpy(grads[k]), p.grad.numpy(), atol=TOL, err_msg=k)


OPTIMIZERS = [
    ("sgd", lambda m: optim.SGD(m, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("momentum", lambda m: optim.SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("nesterov", lambda m: optim.SGD(m, lr=0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("adam", lambda m: optim.Adam(m, lr=1e-3, weight_decay=1e-2), lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-2)),
    ("adagrad", lambda m: optim.Adagrad(m, lr=1e-2, weight_decay=1e-3),
     lambda p: torch.optim.Adagrad(p, lr=1e-2, weight_decay=1e-3)),
    ("rmsprop", lambda m: optim.RMSprop(m, lr=1e-3, weight_decay=1e-3), lambda p: torch.optim.RMSprop(p, lr=1e-3, weight_decay=1e-3)),
    ("rmsprop_momentum", lambda m: optim.RMSprop(m, lr=1e-3, momentum=0.9), lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9)),
]


@pytest.mark.parametrize("name,ours,theirs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_five_optimizer_steps_match_torch(xp, name, ours, theirs):
    """The same gradients give the same parameters: torch's optimizer is fed netlab's gradients
    (the net's gradients are compared above), since Adagrad's first step g/(|g|+eps) amplifies
    float32 round-off in near-zero gradients to a full lr step."""
    model = lenet().to(xp)
    twin = to_torch(model)
    opt, opt_t = ours(model), theirs(twin.parameters())
    for _ in range(5):
        x, y = batch()
        logits = model.forward(backend.from_numpy(xp, x))
        _, dlogits = losses.softmax_cross_entropy(logits, backend.from_numpy(xp, y))
        model.backward(dlogits)
        grads = model.grads
        for k, p in twin.named_parameters():
            p.grad = torch.from_numpy(backend.to_numpy(grads[k]).copy())
        opt.step()
        opt_t.step()
    for k, v in twin.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), atol=TOL, err_msg=k)


def test_weights_move_both_ways():
    model = lenet()
    twin = to_torch(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in twin.parameters():  # new weights of a realistic scale, so logits stay O(1)
            p.normal_(0.0, 0.05)
    model.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    x, _ = batch(4)
    np.testing.assert_allclose(backend.to_numpy(model.forward(backend.from_numpy(model.xp, x))),
                               twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
