"""From verified files to device-resident batches: split, normalise, augment, iterate."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from .. import backend
from .augment import Augment
from .datasets import DATASETS, load_split, pixel_counts
from .download import cache_dir, locate
from ..errors import DataError

log = logging.getLogger(__name__)


def normalize(x, mean, std):
    """``(x - mean) / std``: the one normalisation that training, evaluation and prediction share.

    ``mean`` and ``std`` are numbers (one channel, or the same for every channel) or one number
    per channel (a tuple), for images (N, C, H, W)."""
    if not isinstance(mean, (tuple, list)) and not isinstance(std, (tuple, list)):
        return (x - mean) * (1.0 / std)
    from array_api_compat import array_namespace

    xp = array_namespace(x)
    c = x.shape[-3]
    means, stds = per_channel(mean, c), per_channel(std, c)
    shape = (1,) * (x.ndim - 3) + (c, 1, 1)
    m = xp.reshape(xp.asarray(means, dtype=x.dtype, device=x.device), shape)
    scale = xp.reshape(xp.asarray([1.0 / s for s in stds], dtype=x.dtype, device=x.device), shape)
    return (x - m) * scale


def per_channel(value, channels: int) -> tuple:
    """``value`` (a number or one per channel) as one number per channel."""
    if isinstance(value, (tuple, list)):
        if len(value) not in (1, channels):
            raise DataError(f"normalisation of {len(value)} channels for images of {channels}")
        return tuple(float(v) for v in value) * (channels if len(value) == 1 else 1)
    return (float(value),) * channels


def statistics(images) -> tuple:
    """``(mean, std)`` of uint8 images (N, C, H, W) in [0, 1] units, per channel: numbers for one
    channel (exactly as netlab always computed them), tuples for more. ``images`` are the host
    arrays read from the files, before the backend has them, so their own methods serve."""
    means, stds = [], []
    for c in range(images.shape[1]):
        # From the histogram, in exact integers: ``channel.std()`` would hold the channel as
        # float64 deviations (376 MB for MNIST's training images)
        counts = pixel_counts(images, c)
        n = sum(counts)
        s1 = sum(v * k for v, k in enumerate(counts))
        s2 = sum(v * v * k for v, k in enumerate(counts))
        means.append(s1 / n / 255.0)
        stds.append(math.sqrt((n * s2 - s1 * s1) / (n * n)) / 255.0)
    flat = [c for c, s in enumerate(stds) if s <= 0.0]
    if flat:  # a channel with one value in every image carries nothing: centred, not scaled (never divided by 0)
        log.warning("channel %s of every training image holds one value; it is centred but not scaled",
                    ", ".join(map(str, flat)))
        stds = [s if s > 0.0 else 1.0 for s in stds]
    if images.shape[1] == 1:
        return means[0], stds[0]
    return tuple(means), tuple(stds)


@dataclass
class Splits:
    """Images (N, C, H, W) float in [0, 1] and labels (N,) int64, on the backend's device."""

    train_x: object
    train_y: object
    val_x: object
    val_y: object
    test_x: object
    test_y: object
    mean: float | tuple    # training-split pixel statistics, for normalisation: a number for one
    std: float | tuple     # channel, one per channel (a tuple) for more
    classes: tuple
    train_indices: object  # positions in the original training file (NumPy), for audits
    val_indices: object


def load(xp, dataset: str = "mnist", root=None, *, val_fraction: float = 0.1, seed: int = 0,
         download: bool = True, verify: bool = True, device=None, limit: int | None = None,
         input_shape=None, test_fraction: float = 0.1, classes=None, num_classes: int | None = None) -> Splits:
    """Read ``dataset``, shuffle its training file with ``seed`` and hold out ``val_fraction``
    of the original images for validation. ``limit`` keeps only the first images of each file.

    For ``folder`` (a user's images, one subfolder per class, in ``root``): ``input_shape`` is
    the model's (its images are converted and resized to it), ``test_fraction`` of each class is
    held out for testing when the folder has no test/ folder, ``classes`` (if given) are the
    class names the model was trained on and must be the folder's, and ``num_classes`` (if given)
    must be its number of classes."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    spec = DATASETS.lookup(dataset)
    if spec.format == "folder":
        from . import folder as image_folder

        train_images, train_labels, test_images, test_labels, names = image_folder.read(
            root, input_shape, test_fraction=test_fraction, seed=seed, classes=classes, num_classes=num_classes)
    else:
        folder = locate(spec, Path(root) if root else None, download)
        official = folder.expanduser().resolve() == cache_dir(spec.name).expanduser().resolve()
        differing: list[str] = []
        train_images, train_labels = load_split(spec, folder, "train", verify, official, differing)
        test_images, test_labels = load_split(spec, folder, "test", verify, official, differing)
        if differing:
            log.warning("%s: %d of its files differ from the official %s files or cannot be matched to their "
                        "checksums; used as your own data (data.verify=false skips the check)", folder,
                        len(differing), spec.name)
        if train_images.shape[1:] != test_images.shape[1:]:
            raise DataError(f"{folder}: training images are {train_images.shape[2:]} pixels but test images "
                            f"{test_images.shape[2:]}; both splits must have one size")
        names = spec.classes
    if limit:
        train_images, train_labels = train_images[:limit], train_labels[:limit]
        test_images, test_labels = test_images[:limit], test_labels[:limit]
    n = len(train_images)
    n_val = int(round(val_fraction * n))
    if n_val < 1 or n_val >= n:
        raise DataError(f"data.val_fraction={val_fraction} leaves {n - n_val} training and {n_val} "
                        f"validation images out of {n}; both need at least one")
    np_xp = backend.namespace("numpy")
    order = backend.to_numpy(backend.Generator(seed).spawn(0).permutation(np_xp, n))
    val_idx, train_idx = order[:n_val], order[n_val:]
    train = train_images[train_idx]
    mean, std = statistics(train)

    def put(images):
        return backend.from_numpy(xp, images, device=device)

    def to_unit(a):
        # scaled in place: ``astype(...) * c`` would hold a second float copy of the split at once
        # (169 MB for MNIST's training images, the default run's peak memory)
        unit = xp.astype(a, xp.float32, copy=True)
        unit *= 1.0 / 255.0
        return unit

    def labels(a):
        return backend.from_numpy(xp, a, device=device)

    return Splits(
        to_unit(put(train)), labels(train_labels[train_idx]),
        to_unit(put(train_images[val_idx])), labels(train_labels[val_idx]),
        to_unit(put(test_images)), labels(test_labels),
        mean, std, tuple(names), train_idx, val_idx,
    )


def augment_offline(xp, x, y, augment: Augment, copies: int, rng, chunk: int = 8192):
    """The report's offline augmentation: ``copies`` augmented images per original, made once
    from the training images only and appended after them."""
    if copies < 1:
        return x, y
    xs, ys = [x], [y]
    for _ in range(copies):
        n = x.shape[0]
        parts = [augment(xp, x[i:min(n, i + chunk), ...], rng) for i in range(0, n, chunk)]
        xs.append(xp.concat(parts, axis=0))
        ys.append(y)
    return xp.concat(xs, axis=0), xp.concat(ys, axis=0)


class Loader:
    """Batches of (x, y) drawn from device-resident arrays, without host round trips.

    Each epoch's order is a permutation drawn from ``seed`` and the epoch number, so any
    position in any epoch can be resumed exactly. ``transform(x, step)`` (augmentation) runs
    on each batch before normalisation ``(x - mean) / std`` (per channel when they are tuples).
    """

    def __init__(self, xp, x, y, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 mean=0.0, std=1.0, transform=None, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.xp, self.x, self.y = xp, x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rng = backend.Generator(seed)
        self.mean, self.std = mean, std
        self.transform = transform

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batches(self, epoch: int = 0, start: int = 0):
        """Yield the batches of ``epoch`` from batch number ``start`` on."""
        xp = self.xp
        n = self.x.shape[0]
        order = self.rng.spawn(epoch).permutation(xp, n, self.x.device) if self.shuffle else None
        for b in range(start, len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            if order is None:
                xb, yb = self.x[lo:hi, ...], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = xp.take(self.x, idx, axis=0), xp.take(self.y, idx, axis=0)
            if self.transform is not None:
                xb = self.transform(xb)
            yield normalize(xb, self.mean, self.std), yb

    def __iter__(self):
        return self.batches()
