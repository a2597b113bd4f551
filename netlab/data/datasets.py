"""The datasets netlab knows: their files, official checksums, mirrors, class names and how a
user's own image is prepared for a model trained on them (a name table: ``DATASETS``), and how
a split is read from their files, each format with full validation and bounded memory.

Formats: ``idx`` (MNIST, Fashion-MNIST, KMNIST, EMNIST: an images and a labels file per
split), ``cifar`` (CIFAR-10's binary batches: fixed-size records of one label byte and
3x32x32 pixel bytes, never a pickle) and ``folder`` (a user's images, one subfolder per class:
:mod:`netlab.data.folder`). Every reader gives images (N, C, H, W) uint8 and labels (N,) int64.
"""

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

# How a user's own image (predict, the page) becomes a model's input: ``digit`` as MNIST's
# digits were made (dark-on-light inverted, cropped, scaled to 20 px, centred by mass);
# ``resize``: the whole image in the model's colour mode, resized to its height and width.
PREPARATIONS = ("digit", "resize")


@dataclass(frozen=True)
class Archive:
    """One published file that holds a dataset's files (EMNIST's zip, CIFAR-10's tar.gz)."""

    url: str
    name: str          # its file name while it downloads
    md5: str           # the official MD5 of the archive
    size: int | None   # its size in bytes, exactly, where it is published
    max_bytes: int     # a download that grows past this is stopped
    members: dict      # path inside the archive -> the file name netlab writes it as (never a path from the archive)
    member_bytes: int  # bound on each member's size, as stored in the archive


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    mirrors: tuple[str, ...]
    sha256: dict  # decompressed file name -> SHA-256 of its contents
    classes: tuple[str, ...]  # empty: the classes come with the data (a folder's subfolders)
    system_dirs: tuple[str, ...] = ()
    files: dict = field(default_factory=lambda: dict(SPLITS))  # split -> its files (idx: images, labels)
    prepare: str = "digit"    # how a user's image is prepared: one of PREPARATIONS
    format: str = "idx"       # idx, cifar or folder
    md5: dict = field(default_factory=dict)  # file name -> MD5 of the file as published (gzip)
    archive: Archive | None = None  # the one file that holds them all, when they are published that way
    subdirs: tuple[str, ...] = ()   # where an unpacked archive puts them, also searched in a folder
    transposed: bool = False  # images stored transposed (EMNIST): read back as they look
    download: str = ""        # what a download fetches, for messages and the README

    def all_files(self) -> list[str]:
        return [n for names in self.files.values() for n in names]


DATASETS = Registry("dataset")

EMNIST_BALANCED = {
    split: (f"emnist-balanced-{split}-images-idx3-ubyte", f"emnist-balanced-{split}-labels-idx1-ubyte")
    for split in ("train", "test")}
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
CIFAR10_DIR = "cifar-10-batches-bin"

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
        download="four gzip files, 11 MB",
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
        download="four gzip files, 30 MB",
    ),
    DatasetSpec(
        "kmnist",  # Kuzushiji-MNIST: ten cursive hiragana, in MNIST's format
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {},
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        # the MD5s of the published gzip files (torchvision's)
        md5={
            "train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134",
        },
        download="four gzip files, 21 MB",
    ),
    DatasetSpec(
        "emnist",  # EMNIST Balanced: 47 classes of handwritten digits and letters, 112,800 + 18,800 images
        (),
        {},
        tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") + tuple("abdefghnqrt"),
        files=EMNIST_BALANCED,
        archive=Archive(
            "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip", "gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e",
            None, 640 << 20,
            {f"gzip/{name}.gz": f"{name}.gz" for names in EMNIST_BALANCED.values() for name in names},
            256 << 20),
        subdirs=("gzip",),
        transposed=True,
        download="one zip of every EMNIST split, 536 MB; the balanced split's four gzip files are kept",
    ),
    DatasetSpec(
        "cifar10",  # CIFAR-10's binary version: 50,000 + 10,000 colour images of 32x32
        (),
        {},
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        files=CIFAR10_FILES,
        prepare="resize",
        format="cifar",
        archive=Archive(
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz",
            "c32a1d4ab5d03f1284b67883e8d87530", 170_052_171, 170_052_171,
            {f"{CIFAR10_DIR}/{name}": name for names in CIFAR10_FILES.values() for name in names},
            10_000 * (1 + 3 * 32 * 32)),
        subdirs=(CIFAR10_DIR,),
        download="one tar.gz, 170 MB; its six batches (184 MB) are kept",
    ),
    DatasetSpec(
        "folder",  # your own images: data=folder data.root=DIR, one subfolder per class
        (), {}, (), files={}, prepare="resize", format="folder",
    ),
):
    DATASETS.register(_spec.name, _spec)


def load_split(spec: DatasetSpec, root: Path, split: str, verify: bool,
               official: bool = False, differing: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) uint8 and labels (N,) int64 of ``split``, validated.

    With ``verify``, each file is compared with the official checksums (see
    :func:`netlab.data.download.check_official`): a mismatch is an error in netlab's own download
    cache (``official``) and a warning in a folder the user chose, whose files are the user's
    to keep; ``differing`` collects the files that could not be matched, for one warning.
    """
    if spec.format == "cifar":
        return _cifar_split(spec, root, split, verify, official, differing)
    if spec.format != "idx":
        raise DataError(f"{spec.name}: its images are read with data.load, not by split")
    return _idx_split(spec, root, split, verify, official, differing)


def _idx_split(spec, root, split, verify, official, differing):
    """Headers first: the counts must agree and the sizes be plausible before any file is
    decompressed in full."""
    from .download import check_official, find_file, missing_message
    from .idx import MAX_BYTES, parse, payload_bytes, read_bytes, read_header

    image_name, label_name = spec.files[split]
    paths = {}
    for name in (image_name, label_name):
        paths[name] = find_file(root, name, spec.subdirs)
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
        contents = read_bytes(path)
        if verify:
            check_official(spec, root, name, path, contents, official, differing)
        arrays.append(parse(contents, str(path), ndim))
    images, labels = arrays
    _check_labels(spec, paths[label_name], labels)
    if spec.transposed:
        images = images.transpose(0, 2, 1)
    return np.ascontiguousarray(images[:, None]), labels.astype(np.int64)


CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_BATCH = 10_000  # records in each official batch; a user's batch may hold fewer, never more


def _cifar_split(spec, root, split, verify, official, differing):
    """The split's batches, each a whole number of records (at most :data:`CIFAR_BATCH`), in order."""
    from .download import check_official, find_file, missing_message
    from .idx import read_bytes

    images, labels = [], []
    for name in spec.files[split]:
        path = find_file(root, name, spec.subdirs)
        if path is None:
            raise DataError(missing_message(spec, root, [name], "no download was attempted"))
        if path.suffix != ".gz":  # its size says how many records it holds before a byte is read
            try:
                _records(path.stat().st_size, str(path))
            except OSError as exc:
                raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
        contents = read_bytes(path, CIFAR_BATCH * CIFAR_RECORD)
        if verify:
            check_official(spec, root, name, path, contents, official, differing)
        x, y = parse_cifar(contents, str(path))
        _check_labels(spec, path, y)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def parse_cifar(contents: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) of one CIFAR-10 binary batch: records of one
    label byte then 1024 red, 1024 green and 1024 blue bytes, row by row."""
    n = _records(len(contents), name)
    records = np.frombuffer(contents, np.uint8).reshape(n, CIFAR_RECORD)
    return records[:, 1:].reshape(n, 3, 32, 32), records[:, 0].copy()


def _records(size: int, name: str) -> int:
    """The number of CIFAR-10 records in ``size`` bytes: whole records, at most a batch's."""
    if size == 0 or size % CIFAR_RECORD:
        raise DataError(f"{name}: {size:,} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD:,} "
                        f"bytes each: a label byte and 3x32x32 pixel bytes); it is truncated or not a CIFAR-10 "
                        f"binary batch")
    n = size // CIFAR_RECORD
    if n > CIFAR_BATCH:
        raise DataError(f"{name}: {n:,} records; a CIFAR-10 batch holds at most {CIFAR_BATCH:,}")
    return n


def pixel_counts(images: np.ndarray, channel: int) -> list[int]:
    """How many pixels of ``channel`` hold each of the 256 values, over uint8 images (N, C, H, W):
    counted 4,096 images at a time, as one ``bincount`` over the whole channel would widen it to
    int64 indices (376 MB for MNIST's training images, more than a run needs at any other moment)."""
    if images.dtype != np.uint8:
        raise DataError(f"pixel statistics are taken of 8-bit images; got {images.dtype}")
    hist = np.zeros(256, dtype=np.int64)
    for lo in range(0, images.shape[0], 4096):
        hist += np.bincount(images[lo:lo + 4096, channel].reshape(-1), minlength=256)
    return hist.tolist()


def _check_labels(spec, path, labels) -> None:
    if labels.size and labels.max() >= len(spec.classes):
        raise DataError(f"{path}: label {int(labels.max())} outside 0..{len(spec.classes) - 1}")


def input_description(dataset: str, input_shape) -> str:
    """What a model trained on ``dataset`` takes, in words (export metadata, messages)."""
    spec = DATASETS.lookup(dataset)
    c, h, w = (list(input_shape) + [1, 1, 1])[:3]
    dims = f"float32 (N, {c}, {h}, {w}), pixels in [0, 1]"
    if spec.prepare == "digit":
        return f"image: {dims}, a light digit on black as netlab.predict prepares it"
    mode = "RGB channels" if c == 3 else "grey" if c == 1 else f"{c} channels"
    return f"image: {dims}, {mode}, the whole image resized to {h}x{w} as netlab.predict prepares it"
