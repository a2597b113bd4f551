"""A user's own labelled images: ``data=folder data.root=DIR``, one subfolder per class.

The class names are the sorted names of the subfolders. With a ``train/`` and a ``test/``
folder of such subfolders, those are the two splits; otherwise ``test_fraction`` of each
class's images (in name order, shuffled by the seed) is held out for testing, the same images
for the same seed on every machine. Images may have any size and be grey or colour: each is
converted to the model's channels (1: grey, 3: RGB) and resized to its height and width, as
``predict`` prepares a user's image for such a model (:func:`netlab.data.images.load_picture`).

The folder is checked like a user's MNIST files: every file is bounded in bytes and pixels,
every image that cannot be used is named (the count and the first few) before a run starts,
the number of images is bounded before any is decoded, and each class needs an image.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .. import backend
from ..errors import DataError
from .idx import MAX_BYTES
from .images import IMAGE_SUFFIXES, load_picture

log = logging.getLogger(__name__)

MAX_IMAGES = 500_000     # images in one folder dataset (ImageNet's validation set is 50,000)
MAX_CLASSES = 100_000    # model.num_classes' own bound
SHOWN = 5                # unusable images named in the message, before "..."
SPLIT_STREAM = 5         # the seed's stream that holds test images out (the validation split is stream 0)


def classes_of(folder: Path) -> list[str]:
    """The sorted names of ``folder``'s subfolders (hidden ones left out)."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list it ({exc.strerror})") from None


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix; hidden files left out), sorted by name."""
    try:
        return sorted(p for p in folder.iterdir()
                      if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise DataError(f"{folder}: cannot list it ({exc.strerror})") from None


def read(root, input_shape, *, test_fraction: float = 0.1, seed: int = 0, classes=None,
         num_classes: int | None = None):
    """``(train_images, train_labels, test_images, test_labels, classes)`` of the folder ``root``:
    images uint8 (N, C, H, W) in the model's ``input_shape``, labels int64. ``classes`` (the
    names a model was trained on) and ``num_classes`` (its number of scores), when given, must
    be the folder's: checked before any image is decoded."""
    expected = classes
    if root in (None, ""):
        raise DataError("data=folder needs data.root=DIR: a folder with one subfolder of images per class "
                        "(DIR/cat/1.jpg, DIR/dog/2.png, ...), or a train/ and a test/ folder of such subfolders")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} is not a folder; data=folder reads one subfolder of images per class")
    if input_shape is None or len(input_shape) != 3:
        raise DataError(f"data=folder needs the model's input shape (channels, height, width); got {input_shape}")
    channels, height, width = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise DataError(f"data=folder gives images of 1 channel (grey) or 3 (RGB); the model takes {channels} "
                        f"(model.input_shape={list(input_shape)})")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"data.test_fraction must be in (0, 1), got {test_fraction}")

    paired = (root / "train").is_dir() and (root / "test").is_dir()
    tops = [root / "train", root / "test"] if paired else [root]
    classes = classes_of(tops[0])
    if not classes:
        raise DataError(f"{tops[0]} has no class subfolders: put each class's images in a subfolder named after "
                        f"the class ({tops[0] / 'cat' / '1.jpg'}, {tops[0] / 'dog' / '2.png'}, ...)")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{tops[0]}: {len(classes):,} class subfolders; at most {MAX_CLASSES:,}")
    if paired:
        other = classes_of(tops[1])
        if other != classes:
            only_train, only_test = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
            raise DataError(f"{root}: train/ and test/ must have the same class subfolders"
                            + (f"; only in train/: {', '.join(only_train)}" if only_train else "")
                            + (f"; only in test/: {', '.join(only_test)}" if only_test else ""))
    if expected and tuple(expected) != tuple(classes):
        raise DataError(f"{root}: its classes ({', '.join(classes)}) are not the ones the model was trained on "
                        f"({', '.join(expected)})")
    if num_classes is not None and num_classes != len(classes):
        raise DataError(f"{root} has {len(classes)} classes (subfolders: {', '.join(classes[:SHOWN])}"
                        f"{', ...' if len(classes) > SHOWN else ''}) but the model gives {num_classes} scores "
                        f"(model.num_classes={num_classes}); they must be equal")
    # every file listed and counted before any is decoded
    listed = [[images_in(top / c) for c in classes] for top in tops]
    total = sum(len(files) for per_class in listed for files in per_class)
    if total > MAX_IMAGES:
        raise DataError(f"{root}: {total:,} images; a folder dataset holds at most {MAX_IMAGES:,}")
    if total * channels * height * width > MAX_BYTES:
        raise DataError(f"{root}: {total:,} images of {channels}x{height}x{width} would take "
                        f"{total * channels * height * width:,} bytes; refusing more than {MAX_BYTES:,}")
    empty = [c for c, files in zip(classes, listed[0]) if not files]
    if empty:
        where = tops[0]
        raise DataError(f"{where}: {len(empty)} of {len(classes)} classes have no images "
                        f"({', '.join(empty[:SHOWN])}{', ...' if len(empty) > SHOWN else ''}); each class needs at "
                        f"least one ({', '.join(IMAGE_SUFFIXES)})")

    decoded = [_decode_all(per_class, (channels, height, width)) for per_class in listed]
    failures = [f for _, _, fails in decoded for f in fails]
    if failures:
        shown = "; ".join(failures[:SHOWN]) + ("; ..." if len(failures) > SHOWN else "")
        raise DataError(f"{root}: {len(failures)} of {total} images cannot be used ({shown}); fix or remove them")
    if paired:
        (train_x, train_y, _), (test_x, test_y, _) = decoded
    else:
        images, labels, _ = decoded[0]
        test = _held_out(labels, len(classes), test_fraction, seed)
        train_x, train_y = images[~test], labels[~test]
        test_x, test_y = images[test], labels[test]
    log.debug("%s: %d classes, %d training and %d test images, as %dx%dx%d", root, len(classes), len(train_y),
             len(test_y), channels, height, width)
    return train_x, train_y, test_x, test_y, tuple(classes)


def _decode_all(per_class: list[list[Path]], shape) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every listed image decoded into one uint8 array, with its class index; the failures named."""
    n = sum(len(files) for files in per_class)
    images = np.zeros((n, *shape), np.uint8)
    labels = np.zeros(n, np.int64)
    failures, i = [], 0
    for label, files in enumerate(per_class):
        for path in files:
            try:
                images[i] = load_picture(path, *shape)
            except DataError as exc:
                failures.append(str(exc))
            labels[i] = label
            i += 1
    return images, labels, failures


def _held_out(labels: np.ndarray, k: int, fraction: float, seed: int) -> np.ndarray:
    """A mask of the test images: ``fraction`` of each class (at least one where the class has
    two or more images, never its last), chosen by the seed."""
    mask = np.zeros(len(labels), bool)
    xp = backend.namespace("numpy")
    stream = backend.Generator(seed).spawn(SPLIT_STREAM)
    for c in range(k):
        where = np.flatnonzero(labels == c)
        n = len(where)
        n_test = 0 if n < 2 else min(n - 1, max(1, int(math.floor(fraction * n + 0.5))))
        if n_test:
            order = backend.to_numpy(stream.spawn(c).permutation(xp, n))
            mask[where[order[:n_test]]] = True
    return mask
