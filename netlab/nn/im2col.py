"""im2col / col2im as kh*kw strided-slice copies (the Chainer way), in the array API.

Images here are in the batch-last layout (C, H, W, N). A convolution is then one matmul
``W (out, C*kh*kw) @ cols (C*kh*kw, out_h*out_w*N)``, and every slice copy moves runs of
``out_w * N`` contiguous values instead of rows of ``out_w``, which is what makes the copies
cheap on a CPU (measured in benchmarks/NOTES.md).

A strided convolution's windows step over pixels, so their slices would move runs of only N
values. The layer therefore first splits the padded input by the stride into phase planes,
``planes[a, b] = padded[:, a::sh, b::sw, :]``: kernel offset (i, j) then reads a unit-stride
window of plane (i % sh, j % sw), and every copy moves whole runs again (:func:`split_phases`,
:func:`phase_im2col`, :func:`phase_col2im`; with stride 1 the one plane is the padded input).
:func:`im2col` and :func:`col2im`, which slice the padded input itself, are their plain twins.
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


def _phase_rows(size: int, pad: int, stride: int, phase: int):
    """Where the image's pixels of one phase go: the pixels ``start::stride`` of an axis of
    ``size`` are rows ``first:first + count`` of the phase plane that holds padded positions
    ``phase::stride``."""
    first = -(-(pad - phase) // stride) if pad > phase else 0  # ceil((pad - phase) / stride)
    start = stride * first + phase - pad
    return start, first, len(range(start, size, stride))


def _planes_shape(image_shape, sh: int, sw: int, ph: int, pw: int) -> tuple:
    """(sh, sw, C, Hu, Wv, N): Hu = ceil((H + 2 ph) / sh) rows per plane, Wv likewise."""
    c, h, w, n = image_shape
    return sh, sw, c, -(-(h + 2 * ph) // sh), -(-(w + 2 * pw) // sw), n


def _phase_parts(image_shape, sh: int, sw: int, ph: int, pw: int):
    """For each phase plane that holds image pixels: (index into the image, index into the
    planes) of those pixels; each pixel is in exactly one plane."""
    _, h, w, _ = image_shape
    for a in range(sh):
        h0, u0, nh = _phase_rows(h, ph, sh, a)
        for b in range(sw):
            w0, v0, nw = _phase_rows(w, pw, sw, b)
            if nh and nw:
                yield ((slice(None), slice(h0, None, sh), slice(w0, None, sw), slice(None)),
                       (a, b, slice(None), slice(u0, u0 + nh), slice(v0, v0 + nw), slice(None)))


def split_phases(xp, x, sh: int, sw: int, ph: int, pw: int):
    """Batch-last x (C, H, W, N) -> its phase planes (sh, sw, C, Hu, Wv, N): plane (a, b) holds
    the positions ``a::sh, b::sw`` of x padded by (ph, pw) with zeros, and zeros past its end."""
    planes = xp.zeros(_planes_shape(x.shape, sh, sw, ph, pw), dtype=x.dtype, device=x.device)
    for image, plane in _phase_parts(x.shape, sh, sw, ph, pw):
        planes[plane] = x[image]
    return planes


def _phase_window(i: int, j: int, sh: int, sw: int, out_h: int, out_w: int):
    """Index of the phase plane and window that kernel offset (i, j) reads: the output pixel
    (y, x) sees padded position (sh y + i, sw x + j), which is (y + i // sh, x + j // sw) of
    plane (i % sh, j % sw)."""
    return (i % sh, j % sw, slice(None), slice(i // sh, i // sh + out_h), slice(j // sw, j // sw + out_w), slice(None))


def phase_im2col(xp, planes, kh, kw, sh, sw, out_h, out_w, out=None):
    """Phase planes (sh, sw, C, Hu, Wv, N) -> cols (C*kh*kw, out_h*out_w*N), the same matrix as
    :func:`im2col` of the padded input, from unit-stride windows; ``out`` as there."""
    c, n = planes.shape[2], planes.shape[5]
    cols = xp.empty((c, kh, kw, out_h, out_w, n), dtype=planes.dtype, device=planes.device) if out is None else out
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j, ...] = planes[_phase_window(i, j, sh, sw, out_h, out_w)]
    return xp.reshape(cols, (c * kh * kw, out_h * out_w * n))


def phase_col2im(xp, cols, image_shape, kh, kw, sh, sw, ph, pw, out_h, out_w):
    """Adjoint of :func:`split_phases` then :func:`phase_im2col`: cols -> dx (C, H, W, N), the
    image's gradient without its padding (overlapping windows summed, as :func:`col2im`)."""
    c, h, w, n = image_shape
    cols = xp.reshape(cols, (c, kh, kw, out_h, out_w, n))
    planes = xp.zeros(_planes_shape(image_shape, sh, sw, ph, pw), dtype=cols.dtype, device=cols.device)
    for i in range(kh):
        for j in range(kw):
            planes[_phase_window(i, j, sh, sw, out_h, out_w)] += cols[:, i, j, ...]  # in place, as col2im
    if (sh, sw) == (1, 1):  # one plane, the padded image: its middle is dx, no copy
        return planes[0, 0, :, ph:ph + h, pw:pw + w, :]
    dx = xp.empty(image_shape, dtype=cols.dtype, device=cols.device)  # each pixel is in one plane
    for image, plane in _phase_parts(image_shape, sh, sw, ph, pw):
        dx[image] = planes[plane]
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
    planes = split_phases(xp, xp.permute_dims(x, CHWN), sh, sw, ph, pw)
    buffer = layer.scratch.empty(xp, "cols", (c, kh, kw, out_h, out_w, n), x.dtype, x.device)
    cols = phase_im2col(xp, planes, kh, kw, sh, sw, out_h, out_w, out=buffer)
    y = xp.reshape(layer.params["weight"], (layer.out_channels, c * kh * kw)) @ cols
    if "bias" in layer.params:
        y += layer.params["bias"][:, None]  # in place: y is the product's own new array
    return xp.permute_dims(xp.reshape(y, (layer.out_channels, out_h, out_w, n)), NCHW), (cols, (c, h, w, n), (out_h, out_w))


def backward(layer, cache, dy, input_grad: bool = True):
    xp = layer.xp
    cols, image_shape, out_hw = cache
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
    dx = phase_col2im(xp, dcols, image_shape, *layer.kernel_size, *layer.stride, *layer.padding, *out_hw)
    return xp.permute_dims(dx, NCHW)
