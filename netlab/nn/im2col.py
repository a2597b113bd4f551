"""im2col / col2im as kh*kw strided-slice copies (the Chainer way), in the array API.

Arrays here use the channel-first layout (C, N, H, W) so that a convolution is one matmul
``W (out, C*kh*kw) @ cols (C*kh*kw, N*out_h*out_w)`` with no transposes.
"""

from __future__ import annotations


def pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv_outsize(size: int, k: int, s: int, p: int) -> int:
    """Output length of a window of size ``k``, stride ``s`` over ``size`` padded by ``p`` on both sides."""
    out = (size + 2 * p - k) // s + 1
    if out < 1:
        raise ValueError(f"a window of {k} with padding {p} does not fit an input of {size}")
    return out


def pad(xp, x, ph: int, pw: int, value: float = 0.0):
    """Pad the last two axes of ``x`` by (ph, pw) on both sides with ``value``."""
    if ph == 0 and pw == 0:
        return x
    *lead, h, w = x.shape
    out = xp.full((*lead, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype, device=x.device)
    out[..., ph:ph + h, pw:pw + w] = x
    return out


def windows(x, kh, kw, sh, sw, out_h, out_w):
    """Yield (i, j, view) for each kernel offset: the strided slice of ``x`` that offset sees."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[..., i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]


def im2col(xp, x, kh, kw, sh, sw, ph, pw):
    """x: (C, N, H, W) -> cols: (C*kh*kw, N*out_h*out_w), rows ordered (c, i, j)."""
    c, n, h, w = x.shape
    out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
    x = pad(xp, x, ph, pw)
    cols = xp.empty((c, kh, kw, n, out_h, out_w), dtype=x.dtype, device=x.device)
    for i, j, view in windows(x, kh, kw, sh, sw, out_h, out_w):
        cols[:, i, j, ...] = view
    return xp.reshape(cols, (c * kh * kw, n * out_h * out_w))


def col2im(xp, cols, x_shape, kh, kw, sh, sw, ph, pw):
    """Adjoint of :func:`im2col`: cols (C*kh*kw, N*out_h*out_w) -> (C, N, H, W), overlaps summed."""
    c, n, h, w = x_shape
    out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
    cols = xp.reshape(cols, (c, kh, kw, n, out_h, out_w))
    dx = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype, device=cols.device)
    for i in range(kh):
        for j in range(kw):
            sl = (..., slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw))
            dx[sl] = dx[sl] + cols[:, i, j, ...]
    return dx[..., ph:ph + h, pw:pw + w]
