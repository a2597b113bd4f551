"""A user's own image, prepared the way the model's training images were: a digit as MNIST's
digits were made (:func:`load_digit`), or a picture (CIFAR-10, an image folder) in the model's
colour mode, resized to its input (:func:`load_picture`). The folder dataset reads its images
with the same function, so a training image and the same file given to ``predict`` become the
same input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError

MAX_FILE_BYTES = 50 << 20
MAX_PIXELS = 40_000_000  # a 40-megapixel photo; Pillow's own bomb limit is far higher
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


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
    path = _checked_file(path, "a digit image")
    return prepare_digit(_decode(path, str(path), max_pixels), str(path), size, box)


def _checked_file(path, what: str = "an image") -> Path:
    """``path`` if it is a regular file of at most :data:`MAX_FILE_BYTES`, else a DataError."""
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
        raise DataError(f"{path}: {size_on_disk:,} bytes; {what} over {MAX_FILE_BYTES:,} bytes is refused")
    return path


def digit_from_bytes(data: bytes, name: str = "the image", size: int = 28, box: int = 20,
                     max_pixels: int | None = None) -> np.ndarray:
    """:func:`load_digit` for an image sent as bytes (an upload), with the same checks."""
    import io

    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{name}: {len(data):,} bytes; a digit image over {MAX_FILE_BYTES:,} bytes is refused")
    return prepare_digit(_decode(io.BytesIO(data), name, max_pixels), name, size, box)


def _rgb(img) -> np.ndarray:
    """Red, green and blue in [0, 1] as float64 (H, W, 3), from any Pillow mode: grey images
    (16-bit and float ones with their range, as :func:`_gray`) give three equal channels,
    transparency is composited on white paper."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F", "L", "1"):
        gray = _gray(img)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in img.info:
        from PIL import Image

        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        canvas.alpha_composite(img.convert("RGBA"))
        img = canvas
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def _decode(source, name: str, max_pixels: int | None = None, channels: int = 1,
            draft: int | None = None) -> np.ndarray:
    """The image in ``source`` (a path or a binary file), bounded in pixels, in [0, 1]:
    luminance (H, W) for one channel, RGB (H, W, 3) for three. ``draft``: a JPEG may be decoded
    at a reduced scale that keeps both sides at least this long (far faster for photos that are
    resized to a small input anyway)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
                if img.width * img.height > max_pixels:
                    raise DataError(f"{name}: {img.width}x{img.height} pixels; images over {max_pixels:,} "
                                    f"pixels are refused")
                if draft and img.format == "JPEG":
                    img.draft(img.mode, (draft, draft))
                img.load()
                img = ImageOps.exif_transpose(img)  # photos are stored sideways with an orientation tag
                gray = _gray(img) if channels == 1 else _rgb(img)
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


# ------------------------------------------------------------------ pictures: resized, colour kept
def fit(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Decoded pixels in [0, 1] ((H, W) or (H, W, 3)) -> uint8 (C, height, width): quantised to
    bytes as dataset images are, then resized (Lanczos) to the model's input, aspect not kept."""
    from PIL import Image

    u8 = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    img = Image.fromarray(u8)
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.LANCZOS)
    out = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(out[None] if out.ndim == 2 else out.transpose(2, 0, 1))


def _channels(channels: int) -> int:
    if channels not in (1, 3):
        raise DataError(f"netlab reads images as 1 channel (grey) or 3 (RGB); the model takes {channels}")
    return channels


def load_picture(path, channels: int, height: int, width: int, max_pixels: int | None = None) -> np.ndarray:
    """An image file of any size, grey or colour, as uint8 (channels, height, width): grey for
    one channel, RGB for three (transparency on white, EXIF rotation applied), resized."""
    path = _checked_file(path)
    draft = max(height, width)
    return fit(_decode(path, str(path), max_pixels, _channels(channels), draft), height, width)


def picture_from_bytes(data: bytes, name: str, channels: int, height: int, width: int,
                       max_pixels: int | None = None) -> np.ndarray:
    """:func:`load_picture` for an image sent as bytes (an upload), with the same checks."""
    import io

    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{name}: {len(data):,} bytes; an image over {MAX_FILE_BYTES:,} bytes is refused")
    draft = max(height, width)
    return fit(_decode(io.BytesIO(data), name, max_pixels, _channels(channels), draft), height, width)


def prepare(source, preparation: str, input_shape, name: str | None = None,
            max_pixels: int | None = None) -> np.ndarray:
    """A user's image (a path, or its bytes) as a model's input, float32 in [0, 1]: (H, W) for a
    one-channel model, (C, H, W) otherwise. ``preparation`` is the dataset's (``digit``: as
    MNIST's digits were made; ``resize``: the whole picture resized in the model's colour mode)."""
    channels, height, width = (list(input_shape) + [0, 0])[:3]
    bound = {} if max_pixels is None else {"max_pixels": max_pixels}
    is_bytes = isinstance(source, (bytes, bytearray))
    if preparation == "digit":
        if is_bytes:
            return digit_from_bytes(bytes(source), name or "the image", size=height, **bound)
        return load_digit(Path(source), size=height, **bound)
    if is_bytes:
        u8 = picture_from_bytes(bytes(source), name or "the image", channels, height, width, **bound)
    else:
        u8 = load_picture(Path(source), channels, height, width, **bound)
    x = u8.astype(np.float32) * np.float32(1.0 / 255.0)
    return x[0] if channels == 1 else x
