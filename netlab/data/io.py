"""A user's own digit image, prepared the way MNIST's digits were."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError


def load_digit(path, size: int = 28, box: int = 20) -> np.ndarray:
    """Read an image file (PNG, JPEG, ... of any size) as a (size, size) float array in [0, 1]
    with a light digit on black, as MNIST: dark-on-light images are inverted, the digit is
    cropped, scaled so its longer side is ``box`` pixels, and placed with its centre of
    mass at the centre."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or "transparency" in img.info:
                canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
                canvas.alpha_composite(img.convert("RGBA"))
                img = canvas
            gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except FileNotFoundError:
        raise DataError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read it as an image ({exc})") from None
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray  # dark ink on light paper
    gray = np.clip(gray - np.median(border if np.median(border) <= 0.5 else 1.0 - border), 0.0, None)
    if gray.max() <= 0.05:
        raise DataError(f"{path}: no digit found (the image is blank after removing its background)")
    gray /= gray.max()
    rows, cols = np.nonzero(gray > 0.1)
    crop = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    digit = np.asarray(resized, dtype=np.float64) / 255.0
    total = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(new_h)).sum() / total
    cx = (digit.sum(axis=0) * np.arange(new_w)).sum() / total
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - new_h))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - new_w))
    out = np.zeros((size, size))
    out[top:top + new_h, left:left + new_w] = digit
    return out.astype(np.float32)
