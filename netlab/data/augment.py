"""Image augmentation in the array API, so it runs on the GPU with the data.

Images are (N, C, H, W) floats in [0, 1] with a black (0) background. Each transform picks
its images independently with its probability ``p``, from a seeded
:class:`~netlab.backend.Generator`, so the same seed gives the same images on every backend.
"""

from __future__ import annotations

import math

from ..config import AugmentConfig


class Augment:
    """The report's four augmentations as one transform of a batch: rotation and translation
    (one bilinear resampling), then blotches, then noise, each image picked independently
    with each transform's probability. The strengths and probabilities are an
    :class:`~netlab.config.AugmentConfig` (``settings``), or its fields as keywords: the
    schema holds their defaults and ranges."""

    def __init__(self, settings: AugmentConfig | None = None, **values):
        self.settings = settings if settings is not None else AugmentConfig(**values)

    def __eq__(self, other):
        return isinstance(other, Augment) and self.settings == other.settings

    def __repr__(self):
        return f"Augment({self.settings})"

    def __call__(self, xp, x, rng):
        """Augment the batch ``x``: rotation and translation (one bilinear resampling), then blotches and noise."""
        s = self.settings
        n = x.shape[0]
        dtype, device = x.dtype, x.device
        if s.rotate_p or s.translate_p:
            angle = self._pick(xp, rng, n, s.rotate_p, s.degrees * math.pi / 180, dtype, device)
            shifted = rng.random(xp, (n,), dtype, device) < s.translate_p  # one choice per image, both axes
            dx = xp.where(shifted, rng.uniform(xp, -s.pixels, s.pixels, (n,), dtype, device), 0.0)
            dy = xp.where(shifted, rng.uniform(xp, -s.pixels, s.pixels, (n,), dtype, device), 0.0)
            x = affine(xp, x, angle, dx, dy)
        if s.blotch_p:
            x = blotch(xp, x, rng, s.blotch_p, s.blotch_min, s.blotch_max)
        if s.noise_p:
            x = noise(xp, x, rng, s.noise_p, s.noise_std)
        return x

    @staticmethod
    def _pick(xp, rng, n, p, strength, dtype, device):
        """Uniform values in [-strength, strength] for the images picked with probability p, else 0."""
        chosen = rng.random(xp, (n,), dtype, device) < p
        value = rng.uniform(xp, -strength, strength, (n,), dtype, device)
        return xp.where(chosen, value, 0.0)


def affine(xp, x, angle, shift_x, shift_y):
    """Rotate each image by ``angle`` radians (counter-clockwise as displayed, y pointing down)
    about its centre, then shift it by (shift_x, shift_y) pixels; bilinear, zero outside.

    x: (N, C, H, W); angle, shift_x, shift_y: (N,).
    """
    n, c, h, w = x.shape
    dtype, device = x.dtype, x.device
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys = xp.arange(h, dtype=dtype, device=device) - cy
    xs = xp.arange(w, dtype=dtype, device=device) - cx
    # Output pixel p samples the input at R(-angle) (p - shift): the inverse map.
    gy = ys[None, :, None] - shift_y[:, None, None]
    gx = xs[None, None, :] - shift_x[:, None, None]
    cos, sin = xp.cos(angle)[:, None, None], xp.sin(angle)[:, None, None]
    src_x = cos * gx - sin * gy + cx
    src_y = sin * gx + cos * gy + cy
    x0, y0 = xp.floor(src_x), xp.floor(src_y)
    fx, fy = src_x - x0, src_y - y0
    flat = xp.reshape(x, (n, c, h * w))
    out = xp.zeros(x.shape, dtype=dtype, device=device)
    for oy, ox, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yi, xi = y0 + oy, x0 + ox
        inside = (yi >= 0) & (yi <= h - 1) & (xi >= 0) & (xi <= w - 1)
        index = xp.astype(xp.clip(yi, 0, h - 1) * w + xp.clip(xi, 0, w - 1), xp.int64)
        index = xp.broadcast_to(xp.reshape(index, (n, 1, h * w)), (n, c, h * w))
        values = xp.reshape(xp.take_along_axis(flat, index, axis=2), x.shape)
        out = out + values * xp.where(inside, weight, 0.0)[:, None, :, :]
    return out


def blotch(xp, x, rng, p, size_min, size_max):
    """Erase (set to 0) one random axis-aligned rectangle in each image picked with probability p."""
    n, _, h, w = x.shape
    dtype, device = x.dtype, x.device
    chosen = rng.random(xp, (n,), dtype, device) < p
    span = size_max - size_min + 1
    bh = xp.floor(size_min + span * rng.random(xp, (n,), dtype, device))
    bw = xp.floor(size_min + span * rng.random(xp, (n,), dtype, device))
    top = xp.floor((h - bh + 1) * rng.random(xp, (n,), dtype, device))
    left = xp.floor((w - bw + 1) * rng.random(xp, (n,), dtype, device))
    rows = xp.arange(h, dtype=dtype, device=device)[None, :, None]
    cols = xp.arange(w, dtype=dtype, device=device)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + bh)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + bw)[:, None, None]) & chosen[:, None, None])
    return xp.where(inside[:, None, :, :], 0.0, x)


def noise(xp, x, rng, p, std):
    """Add N(0, std^2) noise to each image picked with probability p, then clip to [0, 1]."""
    n = x.shape[0]
    chosen = rng.random(xp, (n,), x.dtype, x.device) < p
    scale = (std * xp.astype(chosen, x.dtype))[:, None, None, None]
    return xp.clip(x + scale * rng.normal(xp, x.shape, x.dtype, x.device), 0.0, 1.0)
