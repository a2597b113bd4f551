"""Layers with hand-written forward and backward passes, in the array API standard.

Image tensors are (N, C, H, W) as in PyTorch. Convolutions work internally on the
channel-first view (C, N, H, W); with NumPy that view is free and the memory order it
produces flows on through ReLU and pooling, so no layer copies just to transpose.
"""

from __future__ import annotations

import math

from .im2col import col2im, conv_outsize, im2col, pad, pair, windows
from .init import kaiming_uniform
from .module import Module

_CNHW = (1, 0, 2, 3)  # the same permutation swaps NCHW <-> CNHW


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

    def backward(self, dy):
        xp = self.xp
        self.grads["weight"] = xp.matrix_transpose(dy) @ self.x
        if "bias" in self.params:
            self.grads["bias"] = xp.sum(dy, axis=0)
        return dy @ self.params["weight"]


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

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params}")

    def forward(self, x):
        xp = self.xp
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
        self.x_shape = (c, n, h, w)
        self.cols = im2col(xp, xp.permute_dims(x, _CNHW), kh, kw, sh, sw, ph, pw)
        w2 = xp.reshape(self.params["weight"], (self.out_channels, c * kh * kw))
        y = w2 @ self.cols  # (out, N*out_h*out_w)
        if "bias" in self.params:
            y = y + self.params["bias"][:, None]
        return xp.permute_dims(xp.reshape(y, (self.out_channels, n, out_h, out_w)), _CNHW)

    def backward(self, dy):
        xp = self.xp
        weight = self.params["weight"]
        dy2 = xp.reshape(xp.permute_dims(dy, _CNHW), (self.out_channels, -1))
        self.grads["weight"] = xp.reshape(dy2 @ xp.matrix_transpose(self.cols), weight.shape)
        if "bias" in self.params:
            self.grads["bias"] = xp.sum(dy2, axis=1)
        w2 = xp.reshape(weight, (self.out_channels, -1))
        dcols = xp.matrix_transpose(w2) @ dy2
        dx = col2im(xp, dcols, self.x_shape, *self.kernel_size, *self.stride, *self.padding)
        return xp.permute_dims(dx, _CNHW)


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

    def _geometry(self, x):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        *_, h, w = x.shape
        return kh, kw, sh, sw, conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)

    def _scatter(self, parts):
        """Sum ``(i, j, d)`` window gradients back into an input-shaped gradient."""
        xp = self.xp
        n, c, h, w = self.x_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
        dx = None
        for i, j, d in parts:
            if dx is None:
                dx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=d.dtype, device=d.device)
            sl = (..., slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw))
            dx[sl] = dx[sl] + d
        return dx[..., ph:ph + h, pw:pw + w]


class MaxPool2d(_Pool2d):
    """Max over each window; backward sends each window's gradient to one arg-max (the first)."""

    def forward(self, x):
        xp = self.xp
        self.x_shape = x.shape
        kh, kw, sh, sw, out_h, out_w = self._geometry(x)
        x = pad(xp, x, *self.padding, value=-math.inf)
        index_dtype = xp.int8 if kh * kw <= 127 else xp.int32
        out = arg = None
        for k, (_, _, view) in enumerate(windows(x, kh, kw, sh, sw, out_h, out_w)):
            if out is None:
                out, arg = view, xp.zeros(view.shape, dtype=index_dtype, device=view.device)
            else:
                arg = xp.where(view > out, k, arg)
                out = xp.maximum(out, view)
        self.arg = arg
        return out

    def backward(self, dy):
        xp = self.xp
        kh, kw = self.kernel_size
        return self._scatter((k // kw, k % kw, xp.where(self.arg == k, dy, 0.0)) for k in range(kh * kw))


class AvgPool2d(_Pool2d):
    """Mean over each window; zero padding counts towards the mean (PyTorch's default)."""

    def forward(self, x):
        xp = self.xp
        self.x_shape = x.shape
        kh, kw, sh, sw, out_h, out_w = self._geometry(x)
        x = pad(xp, x, *self.padding)
        out = None
        for _, _, view in windows(x, kh, kw, sh, sw, out_h, out_w):
            out = view if out is None else out + view
        return out * (1.0 / (kh * kw))

    def backward(self, dy):
        kh, kw = self.kernel_size
        d = dy * (1.0 / (kh * kw))
        return self._scatter((i, j, d) for i in range(kh) for j in range(kw))


class ReLU(Module):
    def forward(self, x):
        self.y = self.xp.maximum(x, 0.0)
        return self.y

    def backward(self, dy):
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

    def backward(self, dy):
        return dy if self.mask is None else dy * self.mask


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def forward(self, x):
        self.x_shape = x.shape
        return self.xp.reshape(x, (x.shape[0], -1))

    def backward(self, dy):
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

    def backward(self, dy):
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
