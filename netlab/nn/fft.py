"""Convolution in the frequency domain: the ``fft`` algorithm of :class:`~netlab.nn.Conv2d`.

A stride-1 convolution is a product per frequency: with X = FFT(x) and W = FFT(kernel), each
of the F frequencies needs one (out, C) @ (C, N) complex matmul, so a 5x5 convolution of
16 -> 32 channels on 14x14 maps costs 4 real multiply-adds per frequency and channel pair
instead of 25 per pixel: the three matmuls of forward and backward shrink ~7x, and what is
left is the transforms (benchmarks/NOTES.md). The im2col algorithm is the plain twin the
tests compare this with. On NumPy, transforms of up to dft.MAX_LENGTH (the seed CNN's take
16) run in :mod:`netlab.nn.dft` instead: real matrix products on planar spectra, with this
module's path through each namespace's FFT as their twin.

Layout. Images are transformed over their (H, W) axes from the (H, W, C, N) view, so the
spectra come out as (Lh, Lw//2+1, C, N) = (F, C, N) and the channel products are batched
matmuls over frequencies with no transposing copy.

No explicit padding. The transform length L >= max(H + p, K, out_h) (rounded up to a size
whose factors are 2, 3 and 5) leaves at least p zeros after the image, holds every output
pixel (out_h = H + 2p - K + 1 exceeds H + p when p > K - 1), and the kernel is stored
rolled back by p: kernel tap a sits at (a - p) mod L. Then circular correlation of the
zero-extended image with that kernel equals the padded convolution for every output
pixel, because no index that an output reads wraps onto image pixels: output i reads
pixels i + a - p in [-p, H + p - 1], and the negative ones wrap to [L - p, L - 1], all
zeros as L - p >= H. Backward is the adjoint of the same circular operator, so it is exact.
"""

from __future__ import annotations

from .. import backend
from . import dft
from .im2col import NCHW


def fft_length(size: int, pad: int, kernel: int) -> int:
    """The smallest length whose only prime factors are 2, 3 and 5 and that holds the zeros
    after the image (size + pad), every kernel tap (kernel) and every output pixel
    (size + 2 pad - kernel + 1, longer than size + pad when pad > kernel - 1)."""
    n = max(size + pad, kernel, size + 2 * pad - kernel + 1)
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def supports(layer) -> bool:
    """Whether the FFT algorithm computes ``layer``: stride 1 only (a strided convolution would
    throw away most of the products it paid for)."""
    return tuple(layer.stride) == (1, 1)


def _kernel_spectrum(xp, weight, lengths, padding):
    """weight (O, C, kh, kw) -> its spectrum (F, O, C), taps rolled back by the padding."""
    o, c, kh, kw = weight.shape
    wk = xp.zeros((*lengths, o, c), dtype=weight.dtype, device=weight.device)
    wk[:kh, :kw, ...] = xp.permute_dims(weight, (2, 3, 0, 1))
    wk = xp.roll(wk, shift=(-padding[0], -padding[1]), axis=(0, 1))
    return xp.reshape(backend.rfftn(xp, wk, lengths, (0, 1)), (-1, o, c))


def forward(layer, x):
    """``(y, cache)``: the convolution, and the spectra that :func:`backward` reuses."""
    xp = layer.xp
    n, c, h, w = x.shape
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    out_h, out_w = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kh}x{kw} kernel with padding {layer.padding} does not fit an input of {h}x{w}")
    lengths = (fft_length(h, ph, kh), fft_length(w, pw, kw))
    if dft.fits(layer, x, lengths):
        return dft.forward(layer, x, lengths, (out_h, out_w))
    spectrum = backend.rfftn(xp, xp.permute_dims(x, (2, 3, 1, 0)), lengths, (0, 1))  # (Lh, Lr, C, N)
    kernel = _kernel_spectrum(xp, layer.params["weight"], lengths, layer.padding)     # (F, O, C)
    o, half = kernel.shape[1], lengths[1] // 2 + 1
    # shapes spelt out, not -1, which an empty batch (n = 0) leaves undetermined
    spectrum = xp.reshape(spectrum, (lengths[0] * half, c, n))
    y = xp.conj(kernel) @ spectrum  # correlation: the conjugate kernel
    y = backend.irfftn(xp, xp.reshape(y, (lengths[0], half, o, n)), lengths, (0, 1), keep=(range(out_h), range(out_w)))
    return _batch_last(xp, y, layer.params.get("bias")), (spectrum, kernel, lengths, (h, w))


def backward(layer, cache, dy, input_grad: bool = True):
    if isinstance(cache, dft.Cache):
        return dft.backward(layer, cache, dy, input_grad)
    xp = layer.xp
    spectrum, kernel, lengths, (h, w) = cache
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    n, o = dy.shape[0], dy.shape[1]
    c, half = spectrum.shape[1], lengths[1] // 2 + 1
    if "bias" in layer.params:
        layer.grads["bias"] = xp.sum(dy, axis=(0, 2, 3))
    d = xp.reshape(backend.rfftn(xp, xp.permute_dims(dy, (2, 3, 1, 0)), lengths, (0, 1)), (lengths[0] * half, o, n))
    # dW[f] = sum_n X[f] conj(dY[f]), taken as conj(dY @ conj(X)^T) to conjugate the small result
    dw = xp.conj(d @ xp.matrix_transpose(xp.conj(spectrum)))
    # the taps were stored rolled back by the padding: tap a is at (a - p) mod L
    taps = ([(a - ph) % lengths[0] for a in range(kh)], [(a - pw) % lengths[1] for a in range(kw)])
    dw = backend.irfftn(xp, xp.reshape(dw, (lengths[0], -1, o, c)), lengths, (0, 1), keep=taps)
    layer.grads["weight"] = xp.permute_dims(dw, (2, 3, 0, 1))
    if not input_grad:
        return None
    dx = xp.matrix_transpose(kernel) @ d  # the adjoint of the correlation: the kernel itself
    dx = backend.irfftn(xp, xp.reshape(dx, (lengths[0], half, c, n)), lengths, (0, 1), keep=(range(h), range(w)))
    return _batch_last(xp, dx)


def _batch_last(xp, a, bias=None):
    """a (H, W, C, N) (+ bias per channel) -> an (N, C, H, W) view of fresh (C, H, W, N) memory,
    the layout the other image layers keep (layers.py): in the transforms' (H, W, C, N) order,
    pooling and flattening would copy with short strides (2.4 ms per flatten at batch 256)."""
    out = xp.empty((a.shape[2], a.shape[0], a.shape[1], a.shape[3]), dtype=a.dtype, device=a.device)
    a = xp.permute_dims(a, (2, 0, 1, 3))
    out[...] = a if bias is None else a + bias[:, None, None, None]
    return xp.permute_dims(out, NCHW)
