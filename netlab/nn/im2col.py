"""im2col / col2im as kh*kw strided-slice copies (the Chainer way), in the array API.

Images here are in the batch-last layout (C, H, W, N). A convolution is then one matmul
``W (out, C*kh*kw) @ cols (C*kh*kw, out_h*out_w*N)``, and every slice copy moves runs of
``out_w * N`` contiguous values instead of rows of ``out_w``, which is what makes the copies
cheap on a CPU (measured in benchmarks/NOTES.md).
"""

from __future__ import annotations

from .. import backend

CHWN = (1, 2, 3, 0)  # view an (N, C, H, W) array as (C, H, W, N)
NCHW = (3, 0, 1, 2)  # and back


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


def window(i: int, j: int, sh: int, sw: int, out_h: int, out_w: int):
    """Index of the (H, W) positions that kernel offset (i, j) sees, for arrays laid out (..., H, W, N)."""
    return (..., slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw), slice(None))


def pad(xp, x, ph: int, pw: int, value: float = 0.0):
    """Pad the H and W axes of ``x`` (..., H, W, N) by (ph, pw) on both sides with ``value``."""
    if ph == 0 and pw == 0:
        return x
    *lead, h, w, n = x.shape
    out = xp.full((*lead, h + 2 * ph, w + 2 * pw, n), value, dtype=x.dtype, device=x.device)
    out[..., ph:ph + h, pw:pw + w, :] = x
    return out


def im2col(xp, x, kh, kw, sh, sw, out_h, out_w, out=None):
    """Padded x: (C, H, W, N) -> cols: (C*kh*kw, out_h*out_w*N), rows ordered (c, i, j).

    ``out``, an uninitialised (C, kh, kw, out_h, out_w, N) array, is filled instead of a new
    one (see :class:`netlab.backend.Scratch`).
    """
    c, _, _, n = x.shape
    cols = xp.empty((c, kh, kw, out_h, out_w, n), dtype=x.dtype, device=x.device) if out is None else out
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j, ...] = x[window(i, j, sh, sw, out_h, out_w)]
    return xp.reshape(cols, (c * kh * kw, out_h * out_w * n))


def col2im(xp, cols, padded_shape, kh, kw, sh, sw, out_h, out_w):
    """Adjoint of :func:`im2col`: cols -> padded (C, H, W, N), overlapping windows summed."""
    c, _, _, n = padded_shape
    cols = xp.reshape(cols, (c, kh, kw, out_h, out_w, n))
    dx = xp.zeros(padded_shape, dtype=cols.dtype, device=cols.device)
    for i in range(kh):
        for j in range(kw):
            # in place on the window's view: ``dx[sl] = dx[sl] + ...`` built a temporary of
            # the window and copied it back, 3x the time (benchmarks/NOTES.md)
            dx[window(i, j, sh, sw, out_h, out_w)] += cols[:, i, j, ...]
    return dx


# ------------------------------------------------------------- the im2col algorithm of Conv2d
def supports(layer) -> bool:
    """im2col computes every convolution: it is the reference algorithm."""
    return True


def forward(layer, x):
    """Conv2d's forward by im2col and one matmul: ``(y, cache)``, the cache being what
    :func:`backward` needs (the columns live in the layer's scratch buffer)."""
    xp = layer.xp
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    out_h, out_w = conv_outsize(h, kh, sh, ph), conv_outsize(w, kw, sw, pw)
    x = pad(xp, xp.permute_dims(x, CHWN), ph, pw)
    buffer = layer.scratch.empty(xp, "cols", (c, kh, kw, out_h, out_w, n), x.dtype, x.device)
    cols = im2col(xp, x, kh, kw, sh, sw, out_h, out_w, out=buffer)
    y = xp.reshape(layer.params["weight"], (layer.out_channels, c * kh * kw)) @ cols
    if "bias" in layer.params:
        y += layer.params["bias"][:, None]  # in place: y is the product's own new array
    return xp.permute_dims(xp.reshape(y, (layer.out_channels, out_h, out_w, n)), NCHW), (cols, x.shape, (out_h, out_w))


def backward(layer, cache, dy, input_grad: bool = True):
    xp = layer.xp
    cols, padded_shape, out_hw = cache
    weight = layer.params["weight"]
    dy2 = xp.reshape(xp.permute_dims(dy, CHWN), (layer.out_channels, -1))
    # cols @ dy2^T, then transposed: the same product as dy2 @ cols^T, but OpenBLAS ran this
    # orientation of the long-inner-dimension product 1.1-1.8x faster (benchmarks/NOTES.md)
    wgrad = xp.matrix_transpose(cols @ xp.matrix_transpose(dy2))
    layer.grads["weight"] = xp.reshape(wgrad, weight.shape)
    if "bias" in layer.params:
        layer.grads["bias"] = xp.sum(dy2, axis=1)
    if not input_grad:
        return None
    w2t = xp.matrix_transpose(xp.reshape(weight, (layer.out_channels, -1)))
    dcols = backend.matmul_into(xp, w2t, dy2, layer.scratch.empty(xp, "dcols", cols.shape, dy2.dtype, dy2.device))
    dx = col2im(xp, dcols, padded_shape, *layer.kernel_size, *layer.stride, *out_hw)
    (ph, pw), (_, h, w, _) = layer.padding, padded_shape
    return xp.permute_dims(dx[:, ph:h - ph, pw:w - pw, :], NCHW)
