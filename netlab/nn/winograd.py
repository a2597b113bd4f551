"""3x3 convolution by Winograd's minimal filtering F(2x2, 3x3): the ``winograd`` algorithm of
:class:`~netlab.nn.Conv2d` (stride 1, 3x3 kernels, any padding).

The output is cut into 2x2 tiles, each computed from a 4x4 tile of the (padded) input: with the
input tile d, the kernel g and the constant matrices B, G and A below, one tile of output is
``A^T [(G g G^T) * (B^T d B)] A``, the product elementwise. Summed over input channels, the 16
elementwise products become 16 matrix products, ``U[k] (out, C) @ V[k] (C, tiles)`` for each
of the 16 positions k of the transformed tile: 16 multiply-adds per output pair of pixels and
channel pair, where im2col needs 36, and no 9x column matrix (V holds 4x the input). The
transforms themselves are additions only (B and A hold 0 and +-1).

Backward is the exact adjoint of the same chain: dM = A dY A^T per tile, dU = dM V^T and
dV = U^T dM (the same 16 products, transposed), dW = G^T dU G, and the input tiles' gradient
B dV B^T added back where the tiles overlap. im2col is the plain twin the tests compare with.
"""

from __future__ import annotations

from .im2col import NCHW

# B^T (4x4), G (4x3), A^T (2x4) of F(2x2, 3x3) (Lavin and Gray, 2016)
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def supports(layer) -> bool:
    """Whether Winograd computes ``layer``: 3x3 kernels at stride 1."""
    return tuple(layer.kernel_size) == (3, 3) and tuple(layer.stride) == (1, 1)


def _matrix(xp, rows, like):
    return xp.asarray(rows, dtype=like.dtype, device=like.device)


def _sandwich(xp, left, right, a):
    """``left @ a[i, j] @ right^T`` over the first two axes of ``a`` (p, q, ...): with a of
    shape (p, q, K) as a (p, q*K) matrix, ``left (r, p) @ a`` then, for each row, ``right
    (s, q) @`` it; two products with a small left matrix, each one pass over the data."""
    p, q = a.shape[0], a.shape[1]
    rest = a.shape[2:]
    k = 1
    for d in rest:
        k *= d
    t = xp.reshape(left @ xp.reshape(a, (p, q * k)), (left.shape[0], q, k))     # (r, q, K)
    return xp.reshape(right @ t, (left.shape[0], right.shape[0], *rest))          # (r, s, ...)


def _every_other(i: int, j: int, tiles_h: int, tiles_w: int):
    """The (C, H, W, N) index of the pixels at offset (i, j) of every tile (the array API leaves
    slice stops past the end unspecified, so the stop is the last index + 1)."""
    return (slice(None), slice(i, i + 2 * (tiles_h - 1) + 1, 2), slice(j, j + 2 * (tiles_w - 1) + 1, 2), slice(None))


def forward(layer, x):
    """``(y, cache)``: the convolution of x (N, C, H, W), and what backward reuses."""
    xp = layer.xp
    n, c, h, w = x.shape
    ph, pw = layer.padding
    out_h, out_w = h + 2 * ph - 2, w + 2 * pw - 2
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a 3x3 kernel with padding {layer.padding} does not fit an input of {h}x{w}")
    th, tw = -(-out_h // 2), -(-out_w // 2)
    # (hp >= out_h + 2 = h + 2 ph, so the image always fits; the zeros below and right fill the last tiles)
    padded = xp.zeros((c, 2 * th + 2, 2 * tw + 2, n), dtype=x.dtype, device=x.device)
    padded[:, ph:ph + h, pw:pw + w, :] = xp.permute_dims(x, (1, 2, 3, 0))
    d = layer.scratch.empty(xp, "tiles", (4, 4, c, th, tw, n), x.dtype, x.device)
    for i in range(4):
        for j in range(4):
            d[i, j, ...] = padded[_every_other(i, j, th, tw)]
    bt = _matrix(xp, BT, x)
    v = xp.reshape(_sandwich(xp, bt, bt, d), (16, c, th * tw * n))               # B^T d B
    weight = layer.params["weight"]
    g = _matrix(xp, G, weight)
    u = xp.reshape(_sandwich(xp, g, g, xp.permute_dims(weight, (2, 3, 0, 1))), (16, *weight.shape[:2]))  # G w G^T
    o = u.shape[1]
    m = xp.reshape(u @ v, (4, 4, o, th, tw, n))
    at = _matrix(xp, AT, x)
    tiles = _sandwich(xp, at, at, m)                                                # A^T M A: (2, 2, O, th, tw, N)
    y = xp.empty((o, 2 * th, 2 * tw, n), dtype=x.dtype, device=x.device)
    for a in range(2):
        for b in range(2):
            y[_every_other(a, b, th, tw)] = tiles[a, b, ...]
    y = y[:, :out_h, :out_w, :]
    if "bias" in layer.params:
        y = y + layer.params["bias"][:, None, None, None]
    return xp.permute_dims(y, NCHW), (v, u, (th, tw), (c, h, w))


def backward(layer, cache, dy, input_grad: bool = True):
    xp = layer.xp
    v, u, (th, tw), (c, h, w) = cache
    n, o, out_h, out_w = dy.shape
    ph, pw = layer.padding
    if "bias" in layer.params:
        layer.grads["bias"] = xp.sum(dy, axis=(0, 2, 3))
    full = xp.zeros((o, 2 * th, 2 * tw, n), dtype=dy.dtype, device=dy.device)
    full[:, :out_h, :out_w, :] = xp.permute_dims(dy, (1, 2, 3, 0))
    dyt = xp.stack([xp.stack([full[_every_other(a, b, th, tw)] for b in range(2)]) for a in range(2)])
    at_t = xp.matrix_transpose(_matrix(xp, AT, dy))                                 # A (4, 2)
    dm = xp.reshape(_sandwich(xp, at_t, at_t, dyt), (16, o, th * tw * n))          # A dY A^T: the output transform's adjoint
    du = dm @ xp.matrix_transpose(v)                                                # (16, O, C)
    g_t = xp.matrix_transpose(_matrix(xp, G, du))                                   # G^T (3, 4)
    dw = _sandwich(xp, g_t, g_t, xp.reshape(du, (4, 4, *du.shape[1:])))            # G^T dU G: (3, 3, O, C)
    layer.grads["weight"] = xp.permute_dims(dw, (2, 3, 0, 1))
    if not input_grad:
        return None
    dv = xp.reshape(xp.matrix_transpose(u) @ dm, (4, 4, c, th, tw, n))
    b = xp.matrix_transpose(_matrix(xp, BT, dy))                                    # B (4, 4)
    dd = _sandwich(xp, b, b, dv)                                                    # B dV B^T: (4, 4, C, th, tw, N)
    dpad = xp.zeros((c, 2 * th + 2, 2 * tw + 2, n), dtype=dy.dtype, device=dy.device)
    for i in range(4):
        for j in range(4):
            sl = _every_other(i, j, th, tw)
            dpad[sl] += dd[i, j, ...]  # where the tiles overlap, added (in place on the view, as col2im)
    return xp.permute_dims(dpad[:, ph:ph + h, pw:pw + w, :], NCHW)
