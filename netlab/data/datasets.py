"""The datasets netlab knows: their files, official checksums, mirrors and class names (a name
table: ``DATASETS``), and how a split is read from verified files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import Registry

log = logging.getLogger(__name__)

SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    mirrors: tuple[str, ...]
    sha256: dict  # decompressed file name -> SHA-256 of its contents
    classes: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    files: dict = field(default_factory=lambda: dict(SPLITS))  # split -> (images file, labels file)


DATASETS = Registry("dataset")
for _spec in (
    DatasetSpec(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        tuple(str(d) for d in range(10)),
    ),
    DatasetSpec(
        "fashion_mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        # Contents of Debian's dataset-fashion-mnist (zalando's repository at 55506a9, recompressed).
        {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("/usr/share/datasets/fashion-mnist",),
    ),
):
    DATASETS.register(_spec.name, _spec)


def load_split(spec: DatasetSpec, root: Path, split: str, verify: bool,
               official: bool = False, differing: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) int64 of ``split``, validated.

    Headers are read first: the counts must agree and the sizes be plausible before any file
    is decompressed in full. With ``verify``, the contents are compared with the official
    files' SHA-256: a mismatch is an error in netlab's own download cache (``official``) and a
    warning in a folder the user chose, whose files are the user's to keep.
    """
    from .download import find_file, missing_message, sha256
    from .idx import MAX_BYTES, parse, payload_bytes, read_bytes, read_header

    image_name, label_name = spec.files[split]
    paths = {}
    for name in (image_name, label_name):
        paths[name] = find_file(root, name)
        if paths[name] is None:
            raise DataError(missing_message(spec, root, [name], "no download was attempted"))
    image_dtype, image_shape, _ = read_header(paths[image_name], 3)
    label_dtype, label_shape, _ = read_header(paths[label_name], 1)
    if image_dtype != np.uint8 or label_dtype != np.uint8:
        raise DataError(f"{root}: {split} images and labels must be unsigned bytes")
    if image_shape[0] != label_shape[0]:
        raise DataError(f"{root}: {split} has {image_shape[0]} images but {label_shape[0]} labels")
    if payload_bytes(image_dtype, image_shape) > MAX_BYTES:
        raise DataError(f"{paths[image_name]}: its header promises {image_shape} images "
                        f"({payload_bytes(image_dtype, image_shape):,} bytes); refusing more than {MAX_BYTES:,}")
    arrays = []
    for name, ndim in ((image_name, 3), (label_name, 1)):
        path = paths[name]
        data = read_bytes(path)
        if verify and spec.sha256.get(name) and sha256(data) != spec.sha256[name]:
            if official:
                raise DataError(f"{path}: this file in netlab's download cache does not match the official "
                                f"{spec.name} file (SHA-256 mismatch), so it is damaged; delete it and it will be "
                                f"downloaded again")
            if differing is None:
                log.warning("%s differs from the official %s file (SHA-256); using it as your own data",
                            path, spec.name)
            else:  # the caller says it once for all the files it reads
                differing.append(path.name)
        arrays.append(parse(data, str(path), ndim))
    images, labels = arrays
    if labels.size and labels.max() >= len(spec.classes):
        raise DataError(f"{root / label_name}: label {int(labels.max())} outside 0..{len(spec.classes) - 1}")
    return images, labels.astype(np.int64)
