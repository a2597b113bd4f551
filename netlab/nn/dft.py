"""The FFT convolution's NumPy fast path: short transforms as real matrix products on planar spectra.

:mod:`netlab.nn.fft` is the algorithm and, through each namespace's own FFT, the plain twin
that the tests compare this with. On NumPy, for transforms of at most :data:`MAX_LENGTH`
(the seed CNN's 14x14 maps take 16), everything here is a real matrix product, so OpenBLAS
does the work and no pass is spent converting between layouts:

- A spectrum is kept *planar*, real and imaginary parts in separate planes: (C, 2, F, N)
  for C channels, F = Lh (Lw//2 + 1) frequencies and N images. Seen per frequency, the
  (C, 2) rows form one (2C, N) matrix with a single row stride (F N values), so the channel
  products of all frequencies are one batched ``matmul`` with ``out=`` a strided view: no
  copy in, none out.
- A complex number a acts on (re, im) as the real 2x2 block [[a.re, -a.im], [a.im, a.re]].
  Written that way, the complex products become real products whose blocks combine the
  parts, and the transforms over H produce and consume planar spectra directly.
- The forward transform reads the batch-last (C, H, W, N) memory that the other image
  layers keep (layers.py); the inverse writes it, keeping only the rows and columns asked
  for, so no crop or transposing copy follows.
- The bias is added to the DC frequency (Lh Lw b there is b at every pixel after the
  inverse), and the bias gradient is the DC row of the output gradient's spectrum.

The matrices are the FFT applied to unit vectors (NumPy, float64, then cast), so they
compute what the twin computes: zero-extension, the padding's roll and the c2r convention
(the imaginary parts of the DC and Nyquist columns are ignored) included. Benchmarks:
benchmarks/NOTES.md rows 25 and 31.
"""

from __future__ import annotations

import functools
import math

# NumPy itself, not the backend's namespace: this path exists for what only NumPy offers here
# (``matmul(out=)`` into strided views, ``as_strided``), and ``fits`` admits NumPy arrays
# alone; every other namespace computes through the array-API twin in fft.py.
import numpy as np

from .im2col import CHWN, NCHW

# Longer transforms go to SciPy's pocketfft (the twin's path): a product costs O(L) per
# value where an FFT costs O(log L), and at length 16 pocketfft's overhead per transform
# was what made products 1.4-2x faster (benchmarks/NOTES.md row 25).
MAX_LENGTH = 32


def fits(layer, x, lengths) -> bool:
    """Whether this path computes ``layer`` on ``x`` with transforms of ``lengths``: NumPy
    arrays of float32 or float64, the weights of the same dtype (a mixed pair would be cast
    down by ``matmul(out=)``; the twin promotes it), short transforms."""
    return (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
            and x.dtype == layer.params["weight"].dtype and max(lengths) <= MAX_LENGTH)


def _frozen(*arrays):
    """The cached matrices, read-only: every call shares them."""
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _real_blocks(re, im):
    """A complex (..., R, C) matrix re + i im as the real (..., R, 2, C, 2) matrix of its 2x2
    blocks [[re, -im], [im, re]], acting on (column, re/im) rows; callers reorder the axes."""
    out = np.empty((*re.shape[:-1], 2, re.shape[-1], 2), dtype=re.dtype)
    out[..., 0, :, 0], out[..., 1, :, 1] = re, re
    out[..., 1, :, 0] = im
    np.negative(im, out=out[..., 0, :, 1])
    return out


class Cache:
    """What :func:`backward` needs from :func:`forward`: the input's planar spectrum, the
    kernel's real block matrices, the sizes. The spectrum lives in the layer's scratch, so a
    cache is valid until the layer's next forward (as im2col's columns are)."""

    def __init__(self, spectrum, blocks, lengths, size):
        self.spectrum, self.blocks, self.lengths, self.size = spectrum, blocks, lengths, size


@functools.lru_cache(maxsize=64)
def _forward_matrices(h, w, lh, lw, dtype):
    """The real DFT over w inputs zero-extended to lw, rows (re/im, v): (2V, w); and the complex
    DFT over h inputs zero-extended to lh as real blocks, rows (re/im, u), columns (h, re/im):
    (2 lh, 2 h)."""
    fw = np.fft.rfft(np.eye(w), n=lw, axis=0)
    fh = np.fft.fft(np.eye(h), n=lh, axis=0)
    blocks = np.transpose(_real_blocks(fh.real, fh.imag), (1, 0, 2, 3))  # (re/im, u, h, re/im)
    return _frozen(np.concatenate([fw.real, fw.imag]).astype(dtype), blocks.reshape(2 * lh, 2 * h).astype(dtype))


@functools.lru_cache(maxsize=64)
def _inverse_matrices(lh, lw, rows, cols, dtype):
    """The inverse complex DFT over lh, only its first ``rows`` outputs, as real blocks: rows
    (row, re/im), columns (re/im, u): (2 rows, 2 lh); and the inverse real DFT over lw on
    [re; im] of the V inputs, only its first ``cols`` outputs: (cols, 2V)."""
    inv = np.fft.ifft(np.eye(lh), axis=0)[:rows]
    blocks = np.transpose(_real_blocks(inv.real, inv.imag), (0, 1, 3, 2))  # (row, re/im, re/im, u)
    unit = np.eye(lw // 2 + 1)
    c2r = np.concatenate([np.fft.irfft(unit, n=lw, axis=0), np.fft.irfft(1j * unit, n=lw, axis=0)], axis=1)
    return _frozen(blocks.reshape(2 * rows, 2 * lh).astype(dtype), c2r[:cols].astype(dtype))


@functools.lru_cache(maxsize=64)
def _tap_matrices(lh, lw, kh, kw, ph, pw, dtype):
    """Kernel taps <-> their spectrum, the taps stored rolled back by the padding (tap a at
    (a - p) mod L, see fft.py): the spectrum's real and imaginary parts from the taps,
    (F, kh kw) each; and the taps of the inverse real DFT from [re; im] of a spectrum
    (kh kw, 2F), as the twin's irfftn reads them."""
    rows = [(i - ph) % lh for i in range(kh) for _ in range(kw)]
    cols = [(j - pw) % lw for _ in range(kh) for j in range(kw)]
    taps = np.zeros((kh * kw, lh, lw))
    taps[np.arange(kh * kw), rows, cols] = 1.0
    spectra = np.fft.rfftn(taps, axes=(1, 2)).reshape(kh * kw, -1).T  # (F, kh kw)
    f = spectra.shape[0]
    unit = np.eye(f).reshape(f, lh, lw // 2 + 1)
    back = [np.fft.irfftn(part, s=(lh, lw), axes=(1, 2)) for part in (unit, 1j * unit)]  # (F, lh, lw) each
    inverse = np.concatenate([b[:, rows, cols].T for b in back], axis=1)  # (kh kw, 2F)
    return _frozen(spectra.real.astype(dtype), spectra.imag.astype(dtype), inverse.astype(dtype))


def _planar(a):
    """(F, 2K, N) view of a planar (K, 2, F, N) array: per frequency, rows (k, re/im) at one stride."""
    k, _, f, n = a.shape
    item = a.itemsize
    return np.lib.stride_tricks.as_strided(a, (f, 2 * k, n), (n * item, f * n * item, item), writeable=True)


def _spectrum(layer, name, a, lengths):
    """The planar spectrum (K, 2, F, N) of an (N, K, H, W) array, in the layer's scratch under ``name``."""
    a = np.ascontiguousarray(np.transpose(a, CHWN))  # no copy for the batch-last view the layers hand on
    k, h, w, n = a.shape
    lh, lw = lengths
    v = lw // 2 + 1
    over_w, over_h = _forward_matrices(h, w, lh, lw, a.dtype)
    t = np.matmul(over_w, a.reshape(k * h, w, n), out=layer.scratch.empty(np, name + ":w", (k * h, 2 * v, n), a.dtype))
    out = layer.scratch.empty(np, name, (k, 2 * lh, v * n), a.dtype)
    np.matmul(over_h, t.reshape(k, 2 * h, v * n), out=out)
    return out.reshape(k, 2, lh * v, n)


def _inverse(layer, name, spectrum, lengths, rows, cols):
    """Planar (K, 2, F, N) -> a fresh (N, K, rows, cols) view of (K, rows, cols, N) memory."""
    k, _, _, n = spectrum.shape
    lh, lw = lengths
    v = lw // 2 + 1
    over_h, c2r = _inverse_matrices(lh, lw, rows, cols, spectrum.dtype)
    z = np.matmul(over_h, spectrum.reshape(k, 2 * lh, v * n),
                  out=layer.scratch.empty(np, name, (k, 2 * rows, v * n), spectrum.dtype))  # (K, rows, 2, V, N)
    out = c2r @ z.reshape(k * rows, 2 * v, n)
    return np.transpose(out.reshape(k, rows, cols, n), NCHW)


def _kernel_blocks(weight, lengths, padding):
    """weight (O, C, kh, kw) -> (F, 2O, 2C): per frequency, the conjugate kernel spectrum
    (correlation, as PyTorch's convolution) as real blocks acting on planar (C, re/im) rows."""
    o, c, kh, kw = weight.shape
    re, im = _tap_matrices(*lengths, kh, kw, *padding, weight.dtype)[:2]
    taps = np.transpose(weight, (2, 3, 0, 1)).reshape(kh * kw, o * c)
    kr, ki = (re @ taps).reshape(-1, o, c), (im @ taps).reshape(-1, o, c)
    return _real_blocks(kr, np.negative(ki)).reshape(-1, 2 * o, 2 * c)  # conj(K) = kr - i ki


def forward(layer, x, lengths, out_size):
    """``(y, cache)`` as :func:`netlab.nn.fft.forward` returns them."""
    n, c, h, w = x.shape
    spectrum = _spectrum(layer, "x", x, lengths)
    blocks = _kernel_blocks(layer.params["weight"], lengths, layer.padding)
    o = blocks.shape[1] // 2
    y = layer.scratch.empty(np, "y", (o, 2, spectrum.shape[2], n), x.dtype)
    np.matmul(blocks, _planar(spectrum), out=_planar(y))
    if "bias" in layer.params:
        y[:, 0, 0, :] += layer.params["bias"][:, None] * float(math.prod(lengths))
    return _inverse(layer, "y:h", y, lengths, *out_size), Cache(spectrum, blocks, lengths, (h, w))


def backward(layer, cache, dy, input_grad: bool = True):
    """dL/dx (or None) as :func:`netlab.nn.fft.backward`; fills the layer's grads."""
    spectrum, blocks, lengths = cache.spectrum, cache.blocks, cache.lengths
    o, c = dy.shape[1], spectrum.shape[0]
    kh, kw = layer.kernel_size
    d = _spectrum(layer, "dy", dy, lengths)
    if "bias" in layer.params:
        layer.grads["bias"] = np.sum(d[:, 0, 0, :], axis=1)  # the DC frequency: the sum over the pixels
    # dW[f] = conj(dY[f]) X[f]^T: all four real products at once, combined below
    g = (_planar(d) @ np.swapaxes(_planar(spectrum), 1, 2)).reshape(-1, o, 2, c, 2)
    parts = np.empty((2, g.shape[0], o, c), dtype=g.dtype)
    np.add(g[:, :, 0, :, 0], g[:, :, 1, :, 1], out=parts[0])
    np.subtract(g[:, :, 0, :, 1], g[:, :, 1, :, 0], out=parts[1])
    inverse = _tap_matrices(*lengths, kh, kw, *layer.padding, g.dtype)[2]
    dw = (inverse @ parts.reshape(-1, o * c)).reshape(kh, kw, o, c)
    layer.grads["weight"] = np.ascontiguousarray(np.transpose(dw, (2, 3, 0, 1)))
    if not input_grad:
        return None
    # the adjoint of the correlation: the transposed blocks are the kernel itself, K^T
    dx = layer.scratch.empty(np, "dx", (c, 2, spectrum.shape[2], dy.shape[0]), dy.dtype)
    np.matmul(np.swapaxes(blocks, 1, 2), _planar(d), out=_planar(dx))
    return _inverse(layer, "dx:h", dx, lengths, *cache.size)
