"""Layers with hand-written forward and backward passes, in the array API standard.

Image tensors are (N, C, H, W) as in PyTorch. Convolution and pooling work internally on
the batch-last view (C, H, W, N) and return their results as (N, C, H, W) views of
batch-last memory; with NumPy those views are free and elementwise layers keep their memory
order, so from one convolution to the next no layer copies just to transpose.
"""

from __future__ import annotations

import math

from .. import backend
from .im2col import col2im, conv_outsize, im2col, pad, pair, window
from .init import kaiming_uniform
from .module import Module

_CHWN = (1, 2, 3, 0)  # view an (N, C, H, W) array as (C, H, W, N)
_NCHW = (3, 0, 1, 2)  # and back


class Linear(Module):
    """y = x @ W.T + b; x: (N, in_features), W: (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.params["weight"] = kaiming_uniform((out_features, in_features), in_features, rng)
        if bias:
            self.params["bias"] = kaiming_uniform((out_features,), in_features, rng)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={'bias' in self.params}"

    def forward(self, x):
        self.x = x
        y = x @ self.xp.matrix_transpose(self.params["weight"])
        return y + self.params["bias"] if "bias" in self.params else y

    def backward(self, dy, input_grad: bool = True):
        xp = self.xp
        self.grads["weight"] = xp.matrix_transpose(dy) @ self.x
        if "bias" in self.params:
            self.grads["bias"] = xp.sum(dy, axis=0)
        return dy @ self.params["weight"] if input_grad else None


class Conv2d(Module):
    """2-D convolution by im2col + one matmul. x: (N, C, H, W) -> (N, out, out_h, out_w)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, rng=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = pair(kernel_size), pair(stride), pair(padding)
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        self.params["weight"] = kaiming_uniform((out_channels, in_channels, kh, kw), fan_in, rng)
        if bias:
            self.params["bias"] = kaiming_uniform((out_channels,), fan_in, rng)
        self.scratch = backend.Scratch()  # column matrices reused from step to step

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params}")

    def forward(self, x):
        xp = self.xp
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        self.out_hw = out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
        x = pad(xp, xp.permute_dims(x, _CHWN), ph, pw)
        self.padded_shape = x.shape
        buffer = self.scratch.empty(xp, "cols", (c, kh, kw, out_h, out_w, n), x.dtype, x.device)
        self.cols = im2col(xp, x, kh, kw, sh, sw, out_h, out_w, out=buffer)
        y = xp.reshape(self.params["weight"], (self.out_channels, c * kh * kw)) @ self.cols
        if "bias" in self.params:
            y = y + self.params["bias"][:, None]
        return xp.permute_dims(xp.reshape(y, (self.out_channels, out_h, out_w, n)), _NCHW)

    def backward(self, dy, input_grad: bool = True):
        xp = self.xp
        weight = self.params["weight"]
        dy2 = xp.reshape(xp.permute_dims(dy, _CHWN), (self.out_channels, -1))
        self.grads["weight"] = xp.reshape(dy2 @ xp.matrix_transpose(self.cols), weight.shape)
        if "bias" in self.params:
            self.grads["bias"] = xp.sum(dy2, axis=1)
        if not input_grad:
            return None
        w2t = xp.matrix_transpose(xp.reshape(weight, (self.out_channels, -1)))
        dcols = backend.matmul_into(xp, w2t, dy2, self.scratch.empty(xp, "dcols", self.cols.shape, dy2.dtype,
                                                                     dy2.device))
        dx = col2im(xp, dcols, self.padded_shape, *self.kernel_size, *self.stride, *self.out_hw)
        (ph, pw), (_, h, w, _) = self.padding, self.padded_shape
        return xp.permute_dims(dx[:, ph:h - ph, pw:w - pw, :], _NCHW)


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)
        self.padding = pair(padding)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding {self.padding} must be at most half the kernel {self.kernel_size}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _windows(self, x, value=0.0):
        """x (N, C, H, W) -> [(i, j, view)], the strided view of the padded batch-last input that
        each kernel offset (i, j) sees; remembers what backward needs."""
        xp = self.xp
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, c, h, w = self.x_shape = x.shape
        self.out_hw = out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
        x = pad(xp, xp.permute_dims(x, _CHWN), ph, pw, value)
        self.padded_shape = x.shape
        return [(i, j, x[window(i, j, sh, sw, out_h, out_w)]) for i in range(kh) for j in range(kw)]

    def _scatter(self, parts):
        """Sum ``(i, j, d)`` window gradients (batch-last) into dx (N, C, H, W)."""
        xp = self.xp
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        _, h, w, _ = self.padded_shape
        # Windows that neither overlap nor skip pixels tile the input: each slice is written
        # once, so plain assignment replaces read-add-write.
        tiled = (sh, sw) == (kh, kw) and (ph, pw) == (0, 0)
        dx = None
        for i, j, d in parts:
            if dx is None:
                dx = xp.zeros(self.padded_shape, dtype=d.dtype, device=d.device)
            sl = window(i, j, sh, sw, *self.out_hw)
            dx[sl] = d if tiled else dx[sl] + d
        return xp.permute_dims(dx[:, ph:h - ph, pw:w - pw, :], _NCHW)


class MaxPool2d(_Pool2d):
    """Max over each window; backward sends each window's gradient to one arg-max (the first).

    The arg-max is tracked with integer arithmetic and the gradient routed by multiplying
    float masks: NumPy's ``where`` is ~30x slower than a multiply at these sizes.
    """

    def forward(self, x):
        xp = self.xp
        kh, kw = self.kernel_size
        index_dtype = xp.int8 if kh * kw <= 127 else xp.int32
        out = arg = None
        for k, (_, _, view) in enumerate(self._windows(x, value=-math.inf)):
            if out is None:
                out, arg = view, xp.zeros(view.shape, dtype=index_dtype, device=view.device)
            else:
                greater = xp.astype(view > out, index_dtype)
                arg = arg + greater * (k - arg)
                out = xp.maximum(out, view)
        self.arg = arg
        return xp.permute_dims(out, _NCHW)

    def backward(self, dy, input_grad: bool = True):
        xp = self.xp
        kh, kw = self.kernel_size
        dy = xp.permute_dims(dy, _CHWN)
        return self._scatter((k // kw, k % kw, dy * xp.astype(self.arg == k, dy.dtype)) for k in range(kh * kw))


class AvgPool2d(_Pool2d):
    """Mean over each window; zero padding counts towards the mean (PyTorch's default)."""

    def forward(self, x):
        kh, kw = self.kernel_size
        out = None
        for _, _, view in self._windows(x):
            out = view if out is None else out + view
        return self.xp.permute_dims(out * (1.0 / (kh * kw)), _NCHW)

    def backward(self, dy, input_grad: bool = True):
        kh, kw = self.kernel_size
        d = self.xp.permute_dims(dy, _CHWN) * (1.0 / (kh * kw))
        return self._scatter((i, j, d) for i in range(kh) for j in range(kw))


class ReLU(Module):
    def forward(self, x):
        self.y = self.xp.maximum(x, 0.0)
        return self.y

    def backward(self, dy, input_grad: bool = True):
        return dy * self.xp.astype(self.y > 0, dy.dtype)


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        xp = self.xp
        keep = self.rng.random(xp, x.shape, dtype=x.dtype, device=x.device) >= self.p
        self.mask = xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, dy, input_grad: bool = True):
        return dy if self.mask is None else dy * self.mask


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def forward(self, x):
        self.x_shape = x.shape
        return self.xp.reshape(x, (x.shape[0], -1))

    def backward(self, dy, input_grad: bool = True):
        return self.xp.reshape(dy, self.x_shape)


class _BatchNorm(Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        xp = self.xp
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.params["weight"] = xp.ones(num_features, dtype=xp.float32)
        self.params["bias"] = xp.zeros(num_features, dtype=xp.float32)
        self.buffers["running_mean"] = xp.zeros(num_features, dtype=xp.float32)
        self.buffers["running_var"] = xp.ones(num_features, dtype=xp.float32)
        self.buffers["num_batches_tracked"] = xp.asarray(0, dtype=xp.int64)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def _axes(self, x):
        raise NotImplementedError

    def forward(self, x):
        xp = self.xp
        axes = self._axes(x)
        shape = tuple(self.num_features if a == 1 else 1 for a in range(x.ndim))
        if self.training:
            mean = xp.mean(x, axis=axes, keepdims=True)
            var = xp.var(x, axis=axes, keepdims=True)
            count = math.prod(x.shape[a] for a in axes)
            m, b = self.momentum, self.buffers
            b["running_mean"] = (1 - m) * b["running_mean"] + m * xp.reshape(mean, (-1,))
            b["running_var"] = (1 - m) * b["running_var"] + m * xp.reshape(var, (-1,)) * (count / max(count - 1, 1))
            b["num_batches_tracked"] = b["num_batches_tracked"] + 1
        else:
            mean = xp.reshape(self.buffers["running_mean"], shape)
            var = xp.reshape(self.buffers["running_var"], shape)
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)
        self.xhat = (x - mean) * self.inv_std
        self.axes, self.shape = axes, shape
        return xp.reshape(self.params["weight"], shape) * self.xhat + xp.reshape(self.params["bias"], shape)

    def backward(self, dy, input_grad: bool = True):
        xp = self.xp
        axes, xhat = self.axes, self.xhat
        self.grads["weight"] = xp.sum(dy * xhat, axis=axes)
        self.grads["bias"] = xp.sum(dy, axis=axes)
        dxhat = dy * xp.reshape(self.params["weight"], self.shape)
        if not self.training:
            return dxhat * self.inv_std
        mean_d = xp.mean(dxhat, axis=axes, keepdims=True)
        mean_dx = xp.mean(dxhat * xhat, axis=axes, keepdims=True)
        return (dxhat - mean_d - xhat * mean_dx) * self.inv_std


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, H, W) per channel of x: (N, C, H, W)."""

    def _axes(self, x):
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d expects (N, C, H, W), got shape {tuple(x.shape)}")
        return (0, 2, 3)


class BatchNorm1d(_BatchNorm):
    """Batch norm over N (and L) per feature of x: (N, C) or (N, C, L)."""

    def _axes(self, x):
        if x.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d expects (N, C) or (N, C, L), got shape {tuple(x.shape)}")
        return (0,) if x.ndim == 2 else (0, 2)
