"""Image augmentation in the array API, so it runs on the GPU with the data.

Images are (N, C, H, W) floats in [0, 1] with a black (0) background. Each transform picks
its images independently with its probability ``p``, from a seeded
:class:`~netlab.backend.Generator`, so the same seed gives the same images on every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Augment:
    """Strengths and probabilities of the report's four augmentations; the defaults are the
    default recipe's (rotation and translation; blotches and noise off, see study_augment)."""

    rotate_p: float = 0.5       # probability that an image is rotated
    degrees: float = 10.0       # angle drawn uniformly from [-degrees, degrees]
    translate_p: float = 0.5    # probability that an image is shifted
    pixels: float = 2.0         # shift drawn uniformly from [-pixels, pixels] on each axis
    blotch_p: float = 0.0       # probability that a rectangle of an image is erased
    blotch_min: int = 3         # side of the erased rectangle, in pixels
    blotch_max: int = 7         # (the side is drawn from blotch_min..blotch_max)
    noise_p: float = 0.0        # probability that Gaussian noise is added to an image
    noise_std: float = 0.1      # its standard deviation (pixels are in [0, 1])

    def __post_init__(self):
        for name in ("rotate_p", "translate_p", "blotch_p", "noise_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.degrees < 0 or self.pixels < 0 or self.noise_std < 0:
            raise ValueError("augment.degrees, augment.pixels and augment.noise_std must be >= 0")
        if not 1 <= self.blotch_min <= self.blotch_max:
            raise ValueError(f"need 1 <= augment.blotch_min <= augment.blotch_max, got "
                             f"{self.blotch_min} and {self.blotch_max}")

    def __call__(self, xp, x, rng):
        """Augment the batch ``x``: rotation and translation (one bilinear resampling), then blotches and noise."""
        n = x.shape[0]
        dtype, device = x.dtype, x.device
        if self.rotate_p or self.translate_p:
            angle = self._pick(xp, rng, n, self.rotate_p, self.degrees * math.pi / 180, dtype, device)
            dx = self._pick(xp, rng, n, self.translate_p, self.pixels, dtype, device)
            dy = self._pick(xp, rng, n, self.translate_p, self.pixels, dtype, device)
            x = affine(xp, x, angle, dx, dy)
        if self.blotch_p:
            x = blotch(xp, x, rng, self.blotch_p, self.blotch_min, self.blotch_max)
        if self.noise_p:
            x = noise(xp, x, rng, self.noise_p, self.noise_std)
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
