"""A user's own digit image, prepared the way MNIST's digits were."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError

MAX_FILE_BYTES = 50 << 20
MAX_PIXELS = 40_000_000  # a 40-megapixel photo; Pillow's own bomb limit is far higher


def _gray(img) -> np.ndarray:
    """Luminance in [0, 1] as float64, from any Pillow mode: 16-bit and float images keep their
    range (Pillow's convert("L") clips 16-bit values above 255 to white), transparency is
    composited on white paper."""
    if img.mode.startswith("I;16"):
        return np.asarray(img, dtype=np.float64) / 65535.0
    if img.mode in ("I", "F"):  # 32-bit integers or floats: scale by the range the values use
        a = np.asarray(img, dtype=np.float64)
        top = float(np.nanmax(np.abs(a))) if a.size and not np.all(np.isnan(a)) else 1.0
        scale = next((r for r in (1.0, 255.0, 65535.0) if top <= r and (r > 1.0 or img.mode == "F")), top)
        return a / scale
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        from PIL import Image

        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        canvas.alpha_composite(img.convert("RGBA"))
        img = canvas
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def load_digit(path, size: int = 28, box: int = 20, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, ... of any size) as a (size, size) float array in [0, 1]
    with a light digit on black, as MNIST: dark-on-light images are inverted, the digit is
    cropped, scaled so its longer side is ``box`` pixels, and placed with its centre of
    mass at the centre."""
    path = Path(path).expanduser()
    try:
        size_on_disk = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"image {path} not found") from None
    except OSError as exc:
        raise DataError(f"image {path}: cannot read it ({exc.strerror})") from None
    if not path.is_file():
        raise DataError(f"image {path} is not a file")
    if size_on_disk > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size_on_disk:,} bytes; a digit image over {MAX_FILE_BYTES:,} bytes is refused")
    return prepare_digit(_decode(path, str(path), max_pixels), str(path), size, box)


def digit_from_bytes(data: bytes, name: str = "the image", size: int = 28, box: int = 20,
                     max_pixels: int | None = None) -> np.ndarray:
    """:func:`load_digit` for an image sent as bytes (an upload), with the same checks."""
    import io

    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{name}: {len(data):,} bytes; a digit image over {MAX_FILE_BYTES:,} bytes is refused")
    return prepare_digit(_decode(io.BytesIO(data), name, max_pixels), name, size, box)


def _decode(source, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Luminance in [0, 1] of the image in ``source`` (a path or a binary file), bounded in pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
                if img.width * img.height > max_pixels:
                    raise DataError(f"{name}: {img.width}x{img.height} pixels; images over {max_pixels:,} "
                                    f"pixels are refused")
                img.load()
                img = ImageOps.exif_transpose(img)  # photos are stored sideways with an orientation tag
                gray = _gray(img)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{name}: the image is far larger than its file (a decompression bomb); refused") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        detail = f"{type(exc).__name__}: {exc}" if isinstance(source, (str, Path)) else type(exc).__name__
        raise DataError(f"{name}: cannot read it as an image ({detail})") from None
    if not np.all(np.isfinite(gray)):
        raise DataError(f"{name}: the image holds NaN or infinite values")
    return gray


def prepare_digit(gray: np.ndarray, name: str, size: int = 28, box: int = 20) -> np.ndarray:
    """A luminance image -> the (size, size) digit as MNIST has them (see :func:`load_digit`)."""
    from PIL import Image

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray  # dark ink on light paper
    gray = np.clip(gray - np.median(border if np.median(border) <= 0.5 else 1.0 - border), 0.0, None)
    if gray.max() <= 0.05:
        raise DataError(f"{name}: no digit found (the image is blank after removing its background)")
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
