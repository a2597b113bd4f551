"""Independent references: what each layer, the loss and each optimizer step should compute,
written again from the definitions in plain float64 NumPy, deliberately naive.

Nothing here imports netlab, and nothing is vectorised where a loop says it more plainly: a
convolution is the sum over its window, as a textbook writes it; a backward pass is the chain
rule written out term by term (never finite differences, never netlab's own algebra). The tests
(``test_nn.py``, ``test_losses.py``, ``test_optim.py``) run netlab's layers and optimizers on the
same inputs and compare. Images are (N, C, H, W); kernels (out, in, kh, kw).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np


def _f64(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _pixel(x, n, c, r, q, fill):
    """x[n, c, r, q], or ``fill`` where (r, q) lies in the padding."""
    _, _, h, w = x.shape
    return x[n, c, r, q] if 0 <= r < h and 0 <= q < w else fill


# ------------------------------------------------------------------------------ convolution
def conv2d(x, weight, bias, stride=1, padding=0):
    """y[n, o, i, j] = b[o] + sum over c, ki, kj of w[o, c, ki, kj] * x_padded[n, c, i*sh + ki, j*sw + kj]
    (cross-correlation, zero padding, as PyTorch)."""
    x, weight = _f64(x), _f64(weight)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n_, c_, h, w = x.shape
    o_, _, kh, kw = weight.shape
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    y = np.zeros((n_, o_, oh, ow))
    for n, o, i, j in product(range(n_), range(o_), range(oh), range(ow)):
        total = 0.0 if bias is None else float(bias[o])
        for c, ki, kj in product(range(c_), range(kh), range(kw)):
            total += weight[o, c, ki, kj] * _pixel(x, n, c, i * sh + ki - ph, j * sw + kj - pw, 0.0)
        y[n, o, i, j] = total
    return y


def conv2d_backward(x, weight, dy, stride=1, padding=0):
    """(dx, dweight, dbias) of :func:`conv2d` for upstream gradient ``dy``: each product
    w * x in the forward sum sends dy * w to that x and dy * x to that w."""
    x, weight, dy = _f64(x), _f64(weight), _f64(dy)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n_, c_, h, w = x.shape
    o_, _, kh, kw = weight.shape
    _, _, oh, ow = dy.shape
    dx, dw, db = np.zeros_like(x), np.zeros_like(weight), np.zeros(o_)
    for n, o, i, j in product(range(n_), range(o_), range(oh), range(ow)):
        g = dy[n, o, i, j]
        db[o] += g
        for c, ki, kj in product(range(c_), range(kh), range(kw)):
            r, q = i * sh + ki - ph, j * sw + kj - pw
            if 0 <= r < h and 0 <= q < w:  # a padded zero has no gradient to receive
                dx[n, c, r, q] += g * weight[o, c, ki, kj]
                dw[o, c, ki, kj] += g * x[n, c, r, q]
    return dx, dw, db


# --------------------------------------------------------------------------------- pooling
def _windows(x, kernel, stride, padding):
    """Yield (n, c, i, j, [(r, q) of each window position, row by row, padding included]) ."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    n_, c_, h, w = x.shape
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    for n, c, i, j in product(range(n_), range(c_), range(oh), range(ow)):
        yield n, c, i, j, [(i * sh + ki - ph, j * sw + kj - pw) for ki in range(kh) for kj in range(kw)]


def _pool_shape(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    n_, c_, h, w = x.shape
    return n_, c_, out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)


def maxpool2d(x, kernel, stride=None, padding=0):
    """The largest value of each window; padding counts as minus infinity (never the maximum)."""
    x = _f64(x)
    stride = kernel if stride is None else stride
    y = np.zeros(_pool_shape(x, kernel, stride, padding))
    for n, c, i, j, where in _windows(x, kernel, stride, padding):
        y[n, c, i, j] = max(_pixel(x, n, c, r, q, -math.inf) for r, q in where)
    return y


def maxpool2d_backward(x, dy, kernel, stride=None, padding=0):
    """Each window's gradient goes to the first position (row by row) holding its maximum."""
    x, dy = _f64(x), _f64(dy)
    stride = kernel if stride is None else stride
    dx = np.zeros_like(x)
    for n, c, i, j, where in _windows(x, kernel, stride, padding):
        values = [_pixel(x, n, c, r, q, -math.inf) for r, q in where]
        r, q = where[values.index(max(values))]
        dx[n, c, r, q] += dy[n, c, i, j]
    return dx


def avgpool2d(x, kernel, stride=None, padding=0):
    """The mean of each window over kh * kw positions: padded zeros count (PyTorch's default,
    count_include_pad=True)."""
    x = _f64(x)
    stride = kernel if stride is None else stride
    kh, kw = _pair(kernel)
    y = np.zeros(_pool_shape(x, kernel, stride, padding))
    for n, c, i, j, where in _windows(x, kernel, stride, padding):
        y[n, c, i, j] = sum(_pixel(x, n, c, r, q, 0.0) for r, q in where) / (kh * kw)
    return y


def avgpool2d_backward(x, dy, kernel, stride=None, padding=0):
    x, dy = _f64(x), _f64(dy)
    stride = kernel if stride is None else stride
    kh, kw = _pair(kernel)
    _, _, h, w = x.shape
    dx = np.zeros_like(x)
    for n, c, i, j, where in _windows(x, kernel, stride, padding):
        for r, q in where:
            if 0 <= r < h and 0 <= q < w:
                dx[n, c, r, q] += dy[n, c, i, j] / (kh * kw)
    return dx


def global_avgpool2d(x):
    """(N, C, H, W) -> (N, C): the mean of each channel's map."""
    x = _f64(x)
    n_, c_, h, w = x.shape
    y = np.zeros((n_, c_))
    for n, c in product(range(n_), range(c_)):
        y[n, c] = sum(x[n, c, r, q] for r in range(h) for q in range(w)) / (h * w)
    return y


def global_avgpool2d_backward(x, dy):
    x, dy = _f64(x), _f64(dy)
    n_, c_, h, w = x.shape
    dx = np.zeros_like(x)
    for n, c, r, q in product(range(n_), range(c_), range(h), range(w)):
        dx[n, c, r, q] = dy[n, c] / (h * w)
    return dx


# ------------------------------------------------------------------ elementwise activations
def _elementwise(x, f):
    x = _f64(x)
    y = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        y[idx] = f(float(x[idx]))
    return y


def _elementwise_backward(x, dy, derivative):
    x, dy = _f64(x), _f64(dy)
    dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        dx[idx] = dy[idx] * derivative(float(x[idx]))
    return dx


def relu(x):
    return _elementwise(x, lambda v: v if v > 0 else 0.0)


def relu_backward(x, dy):
    return _elementwise_backward(x, dy, lambda v: 1.0 if v > 0 else 0.0)


def leaky_relu(x, slope):
    return _elementwise(x, lambda v: v if v > 0 else slope * v)


def leaky_relu_backward(x, dy, slope):
    return _elementwise_backward(x, dy, lambda v: 1.0 if v > 0 else slope)


def tanh(x):
    return _elementwise(x, math.tanh)


def tanh_backward(x, dy):
    return _elementwise_backward(x, dy, lambda v: 1.0 - math.tanh(v) ** 2)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def sigmoid(x):
    return _elementwise(x, _sigmoid)


def sigmoid_backward(x, dy):
    return _elementwise_backward(x, dy, lambda v: _sigmoid(v) * (1.0 - _sigmoid(v)))


GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


def gelu(x):
    """The tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return _elementwise(x, lambda v: 0.5 * v * (1.0 + math.tanh(GELU_C * (v + GELU_A * v ** 3))))


def gelu_backward(x, dy):
    """d/dx of 0.5 x (1 + t(x)), t = tanh(u), u = C (x + A x^3):
    0.5 (1 + t) + 0.5 x (1 - t^2) C (1 + 3 A x^2)."""
    def derivative(v):
        t = math.tanh(GELU_C * (v + GELU_A * v ** 3))
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * v * v)
    return _elementwise_backward(x, dy, derivative)


# ------------------------------------------------------------------ reshaping, linear, dropout
def flatten(x):
    """(N, C, H, W) -> (N, C*H*W) with feature index c*H*W + h*W + w (PyTorch's order)."""
    x = _f64(x)
    n_, c_, h, w = x.shape
    y = np.zeros((n_, c_ * h * w))
    for n, c, r, q in product(range(n_), range(c_), range(h), range(w)):
        y[n, c * h * w + r * w + q] = x[n, c, r, q]
    return y


def flatten_backward(x_shape, dy):
    dy = _f64(dy)
    n_, c_, h, w = x_shape
    dx = np.zeros(x_shape)
    for n, c, r, q in product(range(n_), range(c_), range(h), range(w)):
        dx[n, c, r, q] = dy[n, c * h * w + r * w + q]
    return dx


def linear(x, weight, bias):
    """y[n, o] = b[o] + sum over i of W[o, i] x[n, i]."""
    x, weight = _f64(x), _f64(weight)
    n_, i_ = x.shape
    o_ = weight.shape[0]
    y = np.zeros((n_, o_))
    for n, o in product(range(n_), range(o_)):
        y[n, o] = (0.0 if bias is None else float(bias[o])) + sum(weight[o, i] * x[n, i] for i in range(i_))
    return y


def linear_backward(x, weight, dy):
    """(dx, dW, db): dx[n, i] = sum_o dy[n, o] W[o, i]; dW[o, i] = sum_n dy[n, o] x[n, i]; db[o] = sum_n dy[n, o]."""
    x, weight, dy = _f64(x), _f64(weight), _f64(dy)
    n_, i_ = x.shape
    o_ = weight.shape[0]
    dx, dw, db = np.zeros_like(x), np.zeros_like(weight), np.zeros(o_)
    for n, o in product(range(n_), range(o_)):
        db[o] += dy[n, o]
        for i in range(i_):
            dx[n, i] += dy[n, o] * weight[o, i]
            dw[o, i] += dy[n, o] * x[n, i]
    return dx, dw, db


def dropout(x, keep, p):
    """Inverted dropout with a given mask: kept elements (keep = 1) scaled by 1/(1 - p), the rest 0."""
    return _f64(x) * _f64(keep) / (1.0 - p)


def dropout_backward(dy, keep, p):
    return _f64(dy) * _f64(keep) / (1.0 - p)


# ------------------------------------------------------------------------------ batch norm
def _channel_groups(shape):
    """For each channel (axis 1), the indices of its elements: the set its statistics are over."""
    groups = [[] for _ in range(shape[1])]
    for idx in np.ndindex(shape):
        groups[idx[1]].append(idx)
    return groups


def batchnorm(x, gamma, beta, running_mean, running_var, *, training, eps=1e-5, momentum=0.1):
    """Batch norm over every axis but axis 1: y = gamma (x - mean) / sqrt(var + eps) + beta, with
    the batch's mean and biased variance in training, the running ones in evaluation. Returns
    (y, new running mean, new running var); training updates them with ``momentum`` and the
    unbiased variance, as PyTorch."""
    x = _f64(x)
    y = np.zeros_like(x)
    new_mean, new_var = _f64(running_mean).copy(), _f64(running_var).copy()
    for c, group in enumerate(_channel_groups(x.shape)):
        m = len(group)
        if training:
            mean = sum(x[i] for i in group) / m
            var = sum((x[i] - mean) ** 2 for i in group) / m
            new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
            new_var[c] = (1 - momentum) * running_var[c] + momentum * var * m / max(m - 1, 1)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        for i in group:
            y[i] = gamma[c] * (x[i] - mean) / math.sqrt(var + eps) + beta[c]
    return y, new_mean, new_var


def batchnorm_backward(x, gamma, dy, running_mean, running_var, *, training, eps=1e-5):
    """(dx, dgamma, dbeta), by the chain rule through mean and variance (Ioffe and Szegedy's
    equations, term by term):
        dxhat = dy gamma
        dvar  = sum dxhat (x - mean) * -1/2 (var + eps)^(-3/2)
        dmean = sum dxhat * -1/sqrt(var + eps) + dvar * sum -2 (x - mean) / m
        dx    = dxhat / sqrt(var + eps) + dvar * 2 (x - mean) / m + dmean / m
    In evaluation the statistics are constants: dx = dy gamma / sqrt(running var + eps)."""
    x, dy = _f64(x), _f64(dy)
    dx = np.zeros_like(x)
    dgamma, dbeta = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for c, group in enumerate(_channel_groups(x.shape)):
        m = len(group)
        if training:
            mean = sum(x[i] for i in group) / m
            var = sum((x[i] - mean) ** 2 for i in group) / m
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        inv = 1.0 / math.sqrt(var + eps)
        for i in group:
            dgamma[c] += dy[i] * (x[i] - mean) * inv
            dbeta[c] += dy[i]
        if not training:
            for i in group:
                dx[i] = dy[i] * gamma[c] * inv
            continue
        dxhat = {i: dy[i] * gamma[c] for i in group}
        dvar = sum(dxhat[i] * (x[i] - mean) for i in group) * -0.5 * (var + eps) ** -1.5
        dmean = sum(-dxhat[i] * inv for i in group) + dvar * sum(-2.0 * (x[i] - mean) for i in group) / m
        for i in group:
            dx[i] = dxhat[i] * inv + dvar * 2.0 * (x[i] - mean) / m + dmean / m
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------- the loss
def softmax_cross_entropy(logits, labels, smoothing=0.0):
    """(mean loss, dloss/dlogits) of softmax cross-entropy against targets 1 - s + s/K for the
    label and s/K for every other class (label smoothing, as PyTorch)."""
    logits = _f64(logits)
    n_, k_ = logits.shape
    loss, grad = 0.0, np.zeros_like(logits)
    for n in range(n_):
        top = max(logits[n])
        lse = top + math.log(sum(math.exp(z - top) for z in logits[n]))
        for k in range(k_):
            target = (1.0 - smoothing) * (k == labels[n]) + smoothing / k_
            loss -= target * (logits[n, k] - lse) / n_
            grad[n, k] = (math.exp(logits[n, k] - lse) - target) / n_
    return loss, grad


# --------------------------------------------------------------------- optimizers: one step
# Each takes one parameter p, its gradient g, a dict of that parameter's state (empty at the
# first step) and the 1-based step number t, and returns the new p, as torch.optim's
# documentation writes the update.
def clip_by_global_norm(grads: dict, max_norm: float) -> dict:
    """Every gradient times min(1, max_norm / (norm + 1e-6)), the norm taken over all of them at
    once (torch.nn.utils.clip_grad_norm_)."""
    norm = math.sqrt(sum(float(np.sum(_f64(g) ** 2)) for g in grads.values()))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return {k: _f64(g) * scale for k, g in grads.items()}


def sgd(p, g, state, t, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    g = g + weight_decay * p
    if momentum:
        state["buf"] = g.copy() if t == 1 else momentum * state["buf"] + g  # the first buffer is g itself
        g = g + momentum * state["buf"] if nesterov else state["buf"]
    return p - lr * g


def adam(p, g, state, t, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    g = g + weight_decay * p
    state["m"] = b1 * state.get("m", np.zeros_like(p)) + (1 - b1) * g
    state["v"] = b2 * state.get("v", np.zeros_like(p)) + (1 - b2) * g * g
    m_hat, v_hat = state["m"] / (1 - b1 ** t), state["v"] / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw(p, g, state, t, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Decoupled weight decay: the weights shrink by lr * weight_decay, the gradient is untouched."""
    p = p * (1.0 - lr * weight_decay)
    return adam(p, g, state, t, lr=lr, betas=betas, eps=eps, weight_decay=0.0)


def adagrad(p, g, state, t, *, lr, eps=1e-10, weight_decay=0.0):
    g = g + weight_decay * p
    state["sum"] = state.get("sum", np.zeros_like(p)) + g * g
    return p - lr * g / (np.sqrt(state["sum"]) + eps)


def rmsprop(p, g, state, t, *, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    g = g + weight_decay * p
    state["sq"] = alpha * state.get("sq", np.zeros_like(p)) + (1 - alpha) * g * g
    step = g / (np.sqrt(state["sq"]) + eps)
    if momentum:
        state["buf"] = momentum * state.get("buf", np.zeros_like(p)) + step
        step = state["buf"]
    return p - lr * step


OPTIMIZERS = {"sgd": sgd, "momentum": sgd, "adam": adam, "adamw": adamw, "adagrad": adagrad, "rmsprop": rmsprop}
