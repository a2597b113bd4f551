"""Data beyond MNIST: KMNIST, EMNIST (balanced) and CIFAR-10 in their exact formats, an image
folder, multi-channel images and per-channel normalisation throughout (checkpoints, saved
models, predict, the page, export), downloads of archives checked before they are opened, and
end-to-end runs on each. The network is not reachable, so every file here is generated in the
dataset's format; checksums are computed from the generated files where the official ones
cannot apply."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import backend, checkpoint, data, saved
from netlab.data import datasets, download, folder, idx, images
from netlab.data.datasets import CIFAR_RECORD, DATASETS
from netlab.errors import CheckpointError, DataError
from netlab.inference import Predictor
from conftest import FIXTURE, HAS_TORCH, cli, tampered

NP = backend.namespace("numpy")


# ----------------------------------------------------------------------------- generated files
def idx_files(root: Path, names: dict, n_train=60, n_test=20, k=10, seed=0, transposed=False, gz=True) -> dict:
    """IDX files (gzip) with ``names`` ({split: (images, labels)}): random images whose labels
    cycle through ``k`` classes. Returns {split: (images as they look (N, 28, 28), labels)}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        look = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % k).astype(np.uint8)
        stored = look.transpose(0, 2, 1) if transposed else look
        image_name, label_name = names[split]
        suffix = ".gz" if gz else ""
        idx.write(root / (image_name + suffix), stored)
        idx.write(root / (label_name + suffix), labels)
        out[split] = (look, labels)
    return out


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` CIFAR-10 binary records: (bytes, images (n, 3, 32, 32), labels)."""
    rng = np.random.default_rng(seed)
    pictures = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    records = np.concatenate([labels[:, None], pictures.reshape(n, -1)], axis=1)
    return records.tobytes(), pictures, labels


def cifar_files(root: Path, per_batch: int = 16, test: int = 20) -> dict:
    """The six CIFAR-10 batch files, small; returns {file name: (images, labels)}."""
    root.mkdir(parents=True, exist_ok=True)
    made = {}
    for i, name in enumerate(datasets.CIFAR10_FILES["train"] + datasets.CIFAR10_FILES["test"]):
        raw, x, y = cifar_batch(test if name == "test_batch.bin" else per_batch, seed=i)
        (root / name).write_bytes(raw)
        made[name] = (x, y)
    return made


def picture(path: Path, size=(40, 30), colour=(200, 30, 30), mode="RGB", noise_seed=None):
    """An image file of one colour (plus a little noise with ``noise_seed``) in ``mode``."""
    w, h = size
    a = np.empty((h, w, 3), np.uint8)
    a[...] = colour
    if noise_seed is not None:
        a = np.clip(a.astype(int) + np.random.default_rng(noise_seed).integers(-25, 26, a.shape), 0, 255)
        a = a.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(a).convert(mode)
    img.save(path)
    return path


def image_folder(root: Path, per_class: int = 8, classes=("cat", "dog", "owl")) -> Path:
    """A folder dataset: one subfolder per class, images of mixed sizes, modes and formats."""
    colours = {"cat": (220, 40, 40), "dog": (40, 200, 40), "owl": (40, 40, 220)}
    modes, suffixes = ("RGB", "L", "RGBA", "P"), (".png", ".jpg", ".png", ".gif")
    for c in classes:
        for i in range(per_class):
            mode, suffix = modes[i % 4], suffixes[i % 4]
            mode = "RGB" if suffix == ".jpg" else mode
            picture(root / c / f"{i:02d}{suffix}", (20 + 7 * i, 50 - 3 * i), colours.get(c, (128, 128, 128)),
                    mode, noise_seed=i)
    return root


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def as_official(monkeypatch):
    """``as_official(name, **changes)``: the dataset's spec with some fields replaced (checksums
    of generated files, a local URL), in force for the test."""
    def patch(name, archive=None, **changes):
        spec = DATASETS[name]
        if archive:
            changes["archive"] = dataclasses.replace(spec.archive, **archive)
        new = dataclasses.replace(spec, **changes)
        monkeypatch.setitem(DATASETS, name, new)
        return new
    return patch


# ------------------------------------------------------------------------------ the dataset table
def test_the_table_holds_every_dataset_with_its_official_checksums():
    assert {"mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "folder"} <= set(DATASETS)
    kmnist, emnist, cifar = DATASETS["kmnist"], DATASETS["emnist"], DATASETS["cifar10"]
    assert kmnist.md5["train-images-idx3-ubyte"] == "bdb82020997e1d708af4cf47b453dcf7"
    assert kmnist.md5["t10k-labels-idx1-ubyte"] == "7320c461ea6c1c855c0b718fb2a4b134"
    assert kmnist.mirrors == ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
    assert emnist.archive.md5 == "58c8d27c78d21e728a6bc7b3cc06412e" and emnist.transposed
    assert emnist.archive.url == "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
    assert set(emnist.archive.members) == {f"gzip/emnist-balanced-{s}-{k}.gz" for s in ("train", "test")
                                           for k in ("images-idx3-ubyte", "labels-idx1-ubyte")}
    assert len(emnist.classes) == 47 and "".join(emnist.classes[36:]) == "abdefghnqrt"
    assert (cifar.archive.md5, cifar.archive.size) == ("c32a1d4ab5d03f1284b67883e8d87530", 170_052_171)
    assert cifar.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                             "truck")
    # MNIST and Fashion-MNIST exactly as they were: the SHA-256 of their decompressed files
    assert DATASETS["mnist"].sha256["train-images-idx3-ubyte"].startswith("ba891046")
    assert DATASETS["fashion_mnist"].sha256["t10k-labels-idx1-ubyte"].startswith("0402a96d")
    # how a user's image is prepared lives in the spec: digits as MNIST's, the others resized
    assert [DATASETS[n].prepare for n in ("mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "folder")] == \
        ["digit"] * 4 + ["resize"] * 2


# ------------------------------------------------------------------------------------ KMNIST
def test_kmnist_is_read_from_idx_gzip_and_matched_by_the_published_md5s(tmp_path, as_official, caplog):
    root = tmp_path / "kmnist"
    made = idx_files(root, datasets.SPLITS)
    s = data.load(NP, "kmnist", root, download=False)
    assert s.train_x.shape == (54, 1, 28, 28) and s.test_x.shape == (20, 1, 28, 28)
    assert s.classes == DATASETS["kmnist"].classes and isinstance(s.mean, float)
    np.testing.assert_array_equal(np.asarray(s.test_x)[:, 0], made["test"][0] * np.float32(1 / 255))
    assert "4 of its files differ from the official kmnist files" in caplog.text  # not the published files
    caplog.clear()
    as_official("kmnist", md5={n: md5(root / (n + ".gz")) for n in DATASETS["kmnist"].all_files()})
    data.load(NP, "kmnist", root, download=False)
    assert "differ" not in caplog.text  # the published gzip files, by their MD5s


def test_a_kmnist_file_in_the_cache_that_fails_its_md5_is_an_error(tmp_path, monkeypatch, as_official):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NETLAB_DATA", raising=False)
    root = tmp_path / "netlab" / "kmnist"
    idx_files(root, datasets.SPLITS)
    sums = {n: md5(root / (n + ".gz")) for n in DATASETS["kmnist"].all_files()}
    as_official("kmnist", md5=sums)
    data.load(NP, "kmnist", download=False)
    as_official("kmnist", md5={**sums, "t10k-labels-idx1-ubyte": "0" * 32})
    with pytest.raises(DataError, match="t10k-labels.*download cache.*MD5.*delete it"):
        data.load(NP, "kmnist", download=False)


def test_kmnist_downloads_are_checked_by_md5_before_they_are_kept(tmp_path, monkeypatch, as_official):
    monkeypatch.delenv("NETLAB_OFFLINE")  # urlopen is replaced below: no network is used
    source = tmp_path / "published"
    idx_files(source, datasets.SPLITS)
    asked = []

    class Response(io.BytesIO):
        headers = {}

    def urlopen(url, timeout):
        asked.append(url)
        return Response((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(download.urllib.request, "urlopen", urlopen)
    sums = {n: md5(source / (n + ".gz")) for n in DATASETS["kmnist"].all_files()}
    as_official("kmnist", md5=sums)
    target = tmp_path / "mine"
    s = data.load(NP, "kmnist", target)
    assert s.train_x.shape[0] == 54 and sorted(p.name for p in target.iterdir()) == sorted(
        n + ".gz" for n in sums)
    assert asked[0] == "http://codh.rois.ac.jp/kmnist/dataset/kmnist/train-images-idx3-ubyte.gz"
    as_official("kmnist", md5={**sums, "train-labels-idx1-ubyte": "f" * 32})
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*checksum mismatch"):
        data.load(NP, "kmnist", tmp_path / "other")
    assert [p.name for p in (tmp_path / "other").iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------------------------ EMNIST
def test_emnist_balanced_is_read_as_it_looks_with_its_47_classes(tmp_path):
    root = tmp_path / "emnist"
    made = idx_files(root / "gzip", datasets.EMNIST_BALANCED, n_train=94, n_test=47, k=47, transposed=True)
    s = data.load(NP, "emnist", root, download=False)  # found in gzip/, as the archive unpacks them
    assert s.test_x.shape == (47, 1, 28, 28) and len(s.classes) == 47
    # stored transposed, read back as they look (an asymmetric image would show it)
    np.testing.assert_array_equal(np.round(np.asarray(s.test_x)[:, 0] * 255).astype(np.uint8), made["test"][0])
    assert s.classes[int(np.asarray(s.test_y)[46])] == "t"
    labels = np.full(47, 47, np.uint8)
    idx.write(root / "gzip" / "emnist-balanced-test-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="label 47 outside 0..46"):
        data.load(NP, "emnist", root, download=False)


def test_emnist_comes_out_of_its_zip_and_only_the_balanced_files(tmp_path, monkeypatch, as_official, caplog):
    monkeypatch.delenv("NETLAB_OFFLINE")  # urlopen is replaced below: no network is used
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NETLAB_DATA", raising=False)
    staging = tmp_path / "staging"
    idx_files(staging, datasets.EMNIST_BALANCED, n_train=94, n_test=47, k=47, transposed=True)
    archive = tmp_path / "gzip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(staging.iterdir()):
            zf.write(p, f"gzip/{p.name}")
        zf.writestr("gzip/emnist-letters-train-images-idx3-ubyte.gz", b"not wanted")
        zf.writestr("../outside.gz", b"never written")
    payload = archive.read_bytes()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response(payload))
    as_official("emnist", archive={"md5": md5(archive), "url": "https://example.invalid/gzip.zip"})
    s = data.load(NP, "emnist")
    cache = tmp_path / "cache" / "netlab" / "emnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [download.MANIFEST] + [n + ".gz" for n in DATASETS["emnist"].all_files()])
    assert not (tmp_path / "cache" / "netlab" / "outside.gz").exists() and s.train_x.shape == (85, 1, 28, 28)
    assert "differ" not in caplog.text  # matched: unpacked from the verified archive
    data.load(NP, "emnist", download=False)  # the cache again, checked against what was unpacked
    spoiled = cache / "emnist-balanced-test-labels-idx1-ubyte.gz"
    idx.write(spoiled, np.zeros(47, np.uint8))
    with pytest.raises(DataError, match="download cache.*not as unpacked from the verified archive"):
        data.load(NP, "emnist", download=False)


# ------------------------------------------------------------------------------------ CIFAR-10
def test_cifar10_records_are_read_in_order_label_then_red_green_blue(tmp_path):
    root = tmp_path / "cifar"
    made = cifar_files(root)
    s = data.load(NP, "cifar10", root, download=False, val_fraction=0.25)
    assert s.train_x.shape == (60, 3, 32, 32) and s.test_x.shape == (20, 3, 32, 32)
    test_x, test_y = made["test_batch.bin"]
    np.testing.assert_array_equal(np.round(np.asarray(s.test_x) * 255).astype(np.uint8), test_x)
    np.testing.assert_array_equal(np.asarray(s.test_y), test_y)
    train_x = np.concatenate([made[n][0] for n in datasets.CIFAR10_FILES["train"]])
    np.testing.assert_array_equal(np.round(np.asarray(s.val_x) * 255).astype(np.uint8), train_x[s.val_indices])


def test_cifar10_first_record_by_hand():
    raw = bytes([7]) + bytes(range(256)) * 12  # label 7, then 1024 red, 1024 green, 1024 blue bytes
    x, y = datasets.parse_cifar(raw, "one")
    assert y.tolist() == [7] and x.shape == (1, 3, 32, 32)
    assert x[0, 0, 0, :3].tolist() == [0, 1, 2] and x[0, 0, 1, 0] == 32 and x[0, 1, 0, 0] == 0
    assert x[0, 2, 31, 31] == 255


@pytest.mark.parametrize("change,message", [
    (lambda raw: raw[:-1], "not a whole number of CIFAR-10 records"),
    (lambda raw: raw + b"\0", "not a whole number of CIFAR-10 records"),
    (lambda raw: b"", "0 bytes is not a whole number"),
    (lambda raw: bytes([10]) + raw[1:], "label 10 outside 0..9"),
    (lambda raw: gzip.compress(raw)[:-9], "corrupt gzip"),
])
def test_hostile_cifar10_batches_are_refused_with_the_file_named(tmp_path, change, message):
    root = tmp_path / "cifar"
    cifar_files(root)
    batch = root / "data_batch_3.bin"
    spoiled = change(batch.read_bytes())
    if spoiled[:2] == b"\x1f\x8b":
        batch.unlink()
        batch = root / "data_batch_3.bin.gz"
    batch.write_bytes(spoiled)
    with pytest.raises(DataError, match=message) as err:
        data.load(NP, "cifar10", root, download=False)
    assert "data_batch_3.bin" in str(err.value)


def test_a_cifar10_batch_cannot_hold_more_than_the_official_count(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CIFAR_BATCH", 10)
    root = tmp_path / "cifar"
    cifar_files(root, per_batch=8, test=11)
    with pytest.raises(DataError, match="11 records; a CIFAR-10 batch holds at most 10"):
        data.load(NP, "cifar10", root, download=False)
    with pytest.raises(DataError, match="more than 30,730 bytes once decompressed"):
        (root / "test_batch.bin").unlink()
        (root / "test_batch.bin.gz").write_bytes(gzip.compress(b"\0" * 200_000))  # a bomb stops at the bound
        data.load(NP, "cifar10", root, download=False)


def test_missing_cifar10_files_name_the_archive_and_where_to_put_them(tmp_path):
    root = tmp_path / "cifar"
    cifar_files(root)
    (root / "data_batch_5.bin").unlink()
    with pytest.raises(DataError, match=r"data_batch_5.bin not found in .*six files.*cifar-10-binary.tar.gz"
                                        r".*c32a1d4ab5d03f1284b67883e8d87530.*data.root"):
        data.load(NP, "cifar10", root, download=False)


# -------------------------------------------------------------------- archives: download and unpack
def cifar_archive(path: Path, members: dict | None = None, extra=()) -> Path:
    """A tar.gz laid out as CIFAR-10's (``members``: {name in the archive: bytes}), plus ``extra``
    TarInfo entries (links, paths out of the folder, ...) with their bytes."""
    if members is None:
        members = {}
        for i, name in enumerate(datasets.CIFAR10_FILES["train"] + datasets.CIFAR10_FILES["test"]):
            members[f"{datasets.CIFAR10_DIR}/{name}"] = cifar_batch(12, seed=i)[0]
        members[f"{datasets.CIFAR10_DIR}/batches.meta.txt"] = b"airplane\n"
    with tarfile.open(path, "w:gz") as tf:
        for info, payload in extra:
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path


def serve_file(as_official, archive: Path, **more):
    """CIFAR-10's spec downloading ``archive`` from a file:// URL, with its size and MD5."""
    size = archive.stat().st_size
    return as_official("cifar10", archive={"url": archive.as_uri(), "md5": md5(archive), "size": size,
                                           "max_bytes": size, **more})


def test_cifar10_downloads_its_archive_checks_it_and_unpacks_only_the_batches(tmp_path, monkeypatch, as_official,
                                                                                caplog):
    monkeypatch.delenv("NETLAB_OFFLINE")  # a file:// URL: no network is used
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NETLAB_DATA", raising=False)
    serve_file(as_official, cifar_archive(tmp_path / "cifar-10-binary.tar.gz"))
    s = data.load(NP, "cifar10")
    cache = tmp_path / "cache" / "netlab" / "cifar10"
    assert sorted(p.name for p in cache.iterdir()) == sorted([download.MANIFEST, *DATASETS["cifar10"].all_files()])
    assert s.train_x.shape == (54, 3, 32, 32) and "differ" not in caplog.text
    (cache / "test_batch.bin").write_bytes(cifar_batch(12, seed=99)[0])  # same size, other bytes
    with pytest.raises(DataError, match="test_batch.bin: this file in netlab's download cache.*delete it"):
        data.load(NP, "cifar10")


def test_an_archive_failing_its_md5_is_never_opened(tmp_path, monkeypatch, as_official):
    monkeypatch.delenv("NETLAB_OFFLINE")
    archive = cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    serve_file(as_official, archive, md5="0" * 32)
    opened = []
    monkeypatch.setattr(download, "unpack", lambda *a, **k: opened.append(a))
    target = tmp_path / "mine"
    with pytest.raises(DataError, match="MD5 mismatch; nothing was unpacked"):
        data.load(NP, "cifar10", target)
    assert not opened and list(target.iterdir()) == []


def test_downloads_are_bounded_in_size(tmp_path, monkeypatch, as_official):
    monkeypatch.delenv("NETLAB_OFFLINE")
    archive = cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    reads = []

    class Huge(io.BytesIO):  # a server announcing far more than the archive's size
        headers = {"Content-Length": str(10 ** 12)}

        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Huge(archive.read_bytes()))
    serve_file(as_official, archive)
    with pytest.raises(DataError, match="announces 1,000,000,000,000 bytes"):
        data.load(NP, "cifar10", tmp_path / "a")
    assert reads == []  # refused before a byte was read

    class Endless(io.RawIOBase):  # no length announced, and no end
        headers = {}

        def read(self, n=-1):
            return b"\0" * (n if n and n > 0 else 1 << 16)

        def __enter__(self):
            return self

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Endless())
    serve_file(as_official, archive, size=None, max_bytes=1 << 20)
    with pytest.raises(DataError, match="more than 1,048,576 bytes arrived; stopped"):
        data.load(NP, "cifar10", tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []  # no partial file left behind


def tar_entry(name, kind=tarfile.REGTYPE, size=0, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def test_an_archive_never_writes_outside_its_folder_nor_follows_links(tmp_path):
    spec = DATASETS["cifar10"]
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    extra = [(tar_entry("../escaped.bin", size=5), b"boom!"),
             (tar_entry("/tmp/absolute.bin", size=5), b"boom!"),
             (tar_entry(f"{datasets.CIFAR10_DIR}/readme.lnk", tarfile.SYMTYPE, link="/etc/passwd"), None)]
    archive = cifar_archive(tmp_path / "a.tar.gz", extra=extra)
    written = download.unpack(spec, archive, target)
    assert sorted(written) == sorted(spec.all_files())
    assert sorted(p.name for p in target.iterdir()) == sorted([download.MANIFEST, *spec.all_files()])
    assert not (tmp_path / "deep" / "escaped.bin").exists() and not Path("/tmp/absolute.bin").exists()
    assert not any(p.is_symlink() for p in target.iterdir())


@pytest.mark.parametrize("entry,message", [
    (tar_entry(f"{datasets.CIFAR10_DIR}/test_batch.bin", tarfile.SYMTYPE, link="/etc/passwd"), "is a link"),
    (tar_entry(f"{datasets.CIFAR10_DIR}/test_batch.bin", tarfile.LNKTYPE,
               link=f"{datasets.CIFAR10_DIR}/data_batch_1.bin"), "is a link"),
    (tar_entry(f"{datasets.CIFAR10_DIR}/test_batch.bin", tarfile.DIRTYPE), "not a regular file"),
    (tar_entry(f"{datasets.CIFAR10_DIR}/test_batch.bin", size=10 ** 12), "claims 1,000,000,000,000 bytes"),
])
def test_a_hostile_member_refuses_the_whole_archive(tmp_path, entry, message):
    spec = DATASETS["cifar10"]
    members = {f"{datasets.CIFAR10_DIR}/{n}": cifar_batch(3, seed=0)[0] for n in spec.all_files()
               if n != "test_batch.bin"}
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
        if entry.size and entry.size > 10 ** 6:  # a header that claims a huge size, and no data
            tf.fileobj.write(entry.tobuf(tf.format, tf.encoding, tf.errors))
        else:
            tf.addfile(entry)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(DataError, match=message):
        download.unpack(spec, archive, target)
    assert list(target.iterdir()) == []  # nothing unpacked


def test_archives_with_duplicate_or_missing_members_or_too_much_data_are_refused(tmp_path, monkeypatch):
    spec = DATASETS["cifar10"]
    one = {f"{datasets.CIFAR10_DIR}/{n}": cifar_batch(2, seed=0)[0] for n in spec.all_files()}
    target = tmp_path / "target"
    target.mkdir()
    twice = cifar_archive(tmp_path / "twice.tar.gz", one, extra=[
        (tar_entry(f"{datasets.CIFAR10_DIR}/test_batch.bin", size=3), b"abc")])
    with pytest.raises(DataError, match="appears more than once"):
        download.unpack(spec, twice, target)
    lacking = cifar_archive(tmp_path / "lacking.tar.gz", {k: v for k, v in one.items() if "batch_2" not in k})
    with pytest.raises(DataError, match="lacks cifar-10-batches-bin/data_batch_2.bin"):
        download.unpack(spec, lacking, target)
    monkeypatch.setattr(download, "TAR_SLACK", 1 << 20)
    bomb = cifar_archive(tmp_path / "bomb.tar.gz", extra=[(tar_entry("filler.bin", size=64 << 20), b"\0" * (64 << 20))])
    small = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, member_bytes=4 * CIFAR_RECORD))
    with pytest.raises(DataError, match="unpacks to more than its files can take"):
        download.unpack(small, bomb, target)
    (tmp_path / "garbage.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(100))
    with pytest.raises(DataError, match="cannot unpack it"):
        download.unpack(spec, tmp_path / "garbage.tar.gz", target)
    assert list(target.iterdir()) == []


def test_zip_members_that_are_links_or_too_large_are_refused(tmp_path):
    spec = DATASETS["emnist"]
    names = list(spec.archive.members)
    target = tmp_path / "target"
    target.mkdir()

    def archive(change):
        path = tmp_path / "gzip.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name in names:
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o100644 << 16
                payload = gzip.compress(b"x")
                info, payload = change(info, payload)
                zf.writestr(info, payload)
        return path

    def link(info, payload):
        if info.filename.endswith("test-labels-idx1-ubyte.gz"):
            info.external_attr = 0o120777 << 16
            payload = b"/etc/passwd"
        return info, payload

    with pytest.raises(DataError, match="test-labels-idx1-ubyte.gz' is a link"):
        download.unpack(spec, archive(link), target)
    small = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, member_bytes=100))
    with pytest.raises(DataError, match="claims 1,000 bytes"):
        download.unpack(small, archive(lambda info, payload: (info, b"\0" * 1000)), target)
    assert list(target.iterdir()) == []
    assert sorted(download.unpack(spec, archive(lambda i, p: (i, p)), target)) == sorted(
        n + ".gz" for n in spec.all_files())


# --------------------------------------------------------------------- per-channel normalisation
def test_statistics_are_per_channel_from_the_training_images_only(tmp_path):
    root = tmp_path / "cifar"
    made = cifar_files(root)
    s = data.load(NP, "cifar10", root, download=False, seed=2)
    train = np.concatenate([made[n][0] for n in datasets.CIFAR10_FILES["train"]])[s.train_indices] / 255.0
    assert isinstance(s.mean, tuple) and len(s.mean) == 3 and len(s.std) == 3
    np.testing.assert_allclose(s.mean, train.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(s.std, train.std(axis=(0, 2, 3)), rtol=1e-12)


def test_one_channel_keeps_one_number_exactly_as_before():
    s = data.load(NP, "mnist", FIXTURE, verify=False, download=False, seed=1)
    raw = idx.parse(idx.read_bytes(FIXTURE / "train-images-idx3-ubyte.gz"))[s.train_indices]
    assert type(s.mean) is float and s.mean == float(raw.mean()) / 255.0 and s.std == float(raw.std()) / 255.0


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", pytest.param(
    "torch", marks=pytest.mark.skipif(not HAS_TORCH, reason="torch not installed"))])
def test_per_channel_normalisation_on_every_backend(name):
    xp = backend.namespace(name)
    x = np.random.default_rng(0).random((4, 3, 5, 6)).astype(np.float32)
    mean, std = (0.5, 0.25, 0.125), (0.2, 0.4, 0.8)
    got = backend.to_numpy(data.normalize(backend.from_numpy(xp, x), mean, std))
    want = (x - np.asarray(mean, np.float32)[:, None, None]) * (1 / np.asarray(std, np.float32))[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    one = backend.to_numpy(data.normalize(backend.from_numpy(xp, x[:, :1]), 0.5, 0.2))
    np.testing.assert_array_equal(one, (x[:, :1] - 0.5) * np.float32(1 / 0.2))


def test_augmentation_moves_every_channel_of_an_image_alike():
    x = np.random.default_rng(0).random((6, 1, 16, 16)).astype(np.float32)
    colour = np.concatenate([x, x * 0.5, x * 0.25], axis=1)
    aug = data.Augment(rotate_p=1.0, translate_p=1.0, blotch_p=1.0, noise_p=0.0)
    out = backend.to_numpy(aug(NP, NP.asarray(colour), backend.Generator(3)))
    assert out.shape == (6, 3, 16, 16) and not np.allclose(out, colour)
    np.testing.assert_allclose(out[:, 1], 0.5 * out[:, 0], atol=1e-6)
    np.testing.assert_allclose(out[:, 2], 0.25 * out[:, 0], atol=1e-6)


def test_checkpoints_keep_per_channel_statistics_as_vectors(tmp_path):
    ck = checkpoint.Checkpoint(model={}, optimizer={}, rngs={}, counters=dict.fromkeys(checkpoint.COUNTERS, 0),
                               running={"loss": 0.0, "correct": 0.0, "count": 0},
                               metrics={c: [] for c in checkpoint.COLUMNS}, mean=(0.49, 0.48, 0.45),
                               std=(0.25, 0.24, 0.26), config="seed: 0\n")
    checkpoint.write(tmp_path / "c.npz", ck)
    with np.load(tmp_path / "c.npz") as f:
        assert f["data_mean"].shape == (3,) and f["data_std"].dtype == np.float64
    back = checkpoint.read(tmp_path / "c.npz")
    assert back.mean == (0.49, 0.48, 0.45) and back.std == (0.25, 0.24, 0.26)


@pytest.mark.parametrize("key,value,message", [
    ("data_mean", np.array([0.5, np.nan, 0.5]), "'data_mean' must be a finite number or a 1-d array"),
    ("data_std", np.array([0.2, 0.0, 0.2]), "'data_std' must be .* each > 0"),
    ("data_std", np.array([0.2, -1.0, 0.2]), "'data_std' must be .* each > 0"),
    ("data_mean", np.zeros((3, 1)), "'data_mean' must be a finite number or a 1-d array"),
    ("data_mean", np.array(["0.1", "0.2"]), "'data_mean' must be a finite number or a 1-d array"),
    ("data_mean", np.zeros(0), "'data_mean' must be a finite number or a 1-d array"),
])
def test_hostile_per_channel_statistics_are_refused(run, tmp_path, key, value, message):
    path = tampered(run, tmp_path, lambda a: a.__setitem__(key, value))
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(path)


def test_statistics_for_other_channels_than_the_model_takes_are_refused(run, tmp_path):
    path = tampered(run, tmp_path, lambda a: a.update(data_mean=np.array([0.1, 0.2, 0.3]),
                                                       data_std=np.array([0.3, 0.3, 0.3])))
    with pytest.raises(CheckpointError, match="normalisation mean has 3 channels but the model takes 1"):
        saved.load(path)


@pytest.mark.parametrize("text,value", [("0.1307", 0.1307), ("[0.5, 0.25, 0.125]", (0.5, 0.25, 0.125)),
                                        ("[0.3]", 0.3), ("[0.1, NaN]", None), ("[]", None), ("[[1]]", None),
                                        ("text", None), ("[true, 1]", None)])
def test_metadata_statistics_are_read_as_numbers_or_one_per_channel(text, value):
    assert saved._channels(text) == value


# ------------------------------------------------------------------------------- image folders
def test_a_folder_is_read_with_sorted_classes_any_size_and_mode(tmp_path):
    root = image_folder(tmp_path / "pets")
    x, y, tx, ty, classes = folder.read(root, (3, 16, 24), test_fraction=0.25, seed=0)
    assert classes == ("cat", "dog", "owl") and x.shape == (18, 3, 16, 24) and tx.shape == (6, 3, 16, 24)
    assert x.dtype == np.uint8 and np.bincount(ty).tolist() == [2, 2, 2]
    # the colours survive, per class: red cats, green dogs, blue owls (grey files give equal channels)
    for label, channel in enumerate((0, 1, 2)):
        colour = x[(y == label)].mean(axis=(0, 2, 3))
        assert colour.argmax() == channel or np.ptp(colour) < 40
    grey = folder.read(root, (1, 8, 8), test_fraction=0.25, seed=0)[0]
    assert grey.shape == (18, 1, 8, 8)


def test_the_held_out_images_follow_the_seed_and_the_fraction_per_class(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=10)
    a = folder.read(root, (3, 8, 8), test_fraction=0.2, seed=1)
    b = folder.read(root, (3, 8, 8), test_fraction=0.2, seed=1)
    c = folder.read(root, (3, 8, 8), test_fraction=0.2, seed=2)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    assert np.bincount(a[3]).tolist() == [2, 2, 2] and not np.array_equal(a[2], c[2])
    s = data.load(NP, "folder", root, input_shape=(3, 8, 8), test_fraction=0.2, seed=1)
    assert s.classes == ("cat", "dog", "owl") and s.test_x.shape[0] == 6 and s.train_x.shape[0] + \
        s.val_x.shape[0] == 24 and isinstance(s.mean, tuple)


def test_a_train_and_test_pair_of_folders_are_the_splits(tmp_path):
    root = tmp_path / "pair"
    image_folder(root / "train", per_class=6)
    image_folder(root / "test", per_class=2)
    x, y, tx, ty, classes = folder.read(root, (3, 8, 8))
    assert (len(x), len(tx), classes) == (18, 6, ("cat", "dog", "owl"))
    (root / "test" / "owl").rename(root / "test" / "bat")
    with pytest.raises(DataError, match="same class subfolders; only in train/: owl; only in test/: bat"):
        folder.read(root, (3, 8, 8))


def test_unusable_images_are_all_counted_and_the_first_named(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "pets", per_class=4)
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    bomb = Image.new("L", (3000, 3000))  # a small file that decodes to far more pixels than allowed
    bomb.save(root / "owl" / "bomb.png")
    os.mkfifo(root / "owl" / "fifo.png")  # a name that looks like an image, and is not a file
    monkeypatch.setattr(images, "MAX_PIXELS", 1_000_000)
    with pytest.raises(DataError, match=r"4 of 16 images cannot be used \(.*broken.png.*empty.jpg.*bomb.png.*"
                                        r"1,000,000 pixels.*fifo.png is not a file\)") as err:
        folder.read(root, (3, 8, 8))
    assert str(root) in str(err.value)


def test_folder_bounds_are_checked_before_any_image_is_decoded(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "pets", per_class=4)
    decoded = []
    monkeypatch.setattr(folder, "load_picture", lambda *a, **k: decoded.append(a))
    monkeypatch.setattr(folder, "MAX_IMAGES", 10)
    with pytest.raises(DataError, match="12 images; a folder dataset holds at most 10"):
        folder.read(root, (3, 8, 8))
    monkeypatch.setattr(folder, "MAX_IMAGES", 100)
    monkeypatch.setattr(folder, "MAX_BYTES", 1000)
    with pytest.raises(DataError, match="12 images of 3x8x8 would take 2,304 bytes; refusing more than 1,000"):
        folder.read(root, (3, 8, 8))
    monkeypatch.setattr(folder, "MAX_BYTES", 1 << 30)
    with pytest.raises(DataError, match="has 3 classes \\(subfolders: cat, dog, owl\\) but the model gives 10 "
                                        "scores \\(model.num_classes=10\\)"):
        folder.read(root, (3, 8, 8), num_classes=10)
    with pytest.raises(DataError, match="are not the ones the model was trained on \\(ant, bee, cat\\)"):
        folder.read(root, (3, 8, 8), classes=["ant", "bee", "cat"])
    for child in (root / "dog").iterdir():
        child.unlink()
    with pytest.raises(DataError, match="1 of 3 classes have no images \\(dog\\)"):
        folder.read(root, (3, 8, 8))
    assert decoded == []


def test_a_file_over_the_byte_bound_is_named(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "pets", per_class=2)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 200)
    with pytest.raises(DataError, match="images cannot be used .*bytes; an image over 200 bytes is refused"):
        folder.read(root, (3, 8, 8))


@pytest.mark.parametrize("make,shape,message", [
    (lambda root: None, (3, 8, 8), "is not a folder"),
    (lambda root: root.mkdir(), (3, 8, 8), "has no class subfolders"),
    (lambda root: image_folder(root, 2), (4, 8, 8), "1 channel \\(grey\\) or 3 \\(RGB\\); the model takes 4"),
    (lambda root: image_folder(root, 2), (8, 8), "needs the model's input shape"),
])
def test_folder_mistakes_are_explained(tmp_path, make, shape, message):
    root = tmp_path / "mine"
    make(root)
    with pytest.raises(DataError, match=message):
        folder.read(root, shape)


def test_a_folder_needs_data_root():
    with pytest.raises(DataError, match="data=folder needs data.root=DIR"):
        data.load(NP, "folder", None, input_shape=(3, 8, 8))


# --------------------------------------------------------------------------- preparing a user's image
def test_a_picture_is_resized_in_colour_without_inversion_or_cropping(tmp_path):
    white = picture(tmp_path / "white.png", (50, 20), (255, 255, 255))
    x = images.prepare(white, "resize", (3, 12, 10))
    assert x.shape == (3, 12, 10) and x.dtype == np.float32 and np.all(x == 1.0)  # not inverted, not refused
    framed = np.zeros((40, 40, 3), np.uint8)
    framed[:, :20] = (255, 0, 0)  # the left half red: kept where it is, not cropped or centred
    Image.fromarray(framed).save(tmp_path / "half.png")
    x = images.prepare(tmp_path / "half.png", "resize", (3, 8, 8))
    assert np.all(x[0, :, :3] > 0.95) and np.all(x[0, :, 5:] < 0.05) and np.all(x[1:] < 0.05)
    grey = images.prepare((tmp_path / "half.png").read_bytes(), "resize", (1, 8, 8))
    assert grey.shape == (8, 8) and 0.25 < grey[0, 0] < 0.35  # luminance of pure red
    rgba = Image.new("RGBA", (10, 10), (0, 0, 255, 0))  # transparent: white paper shows
    rgba.save(tmp_path / "clear.png")
    assert np.all(images.prepare(tmp_path / "clear.png", "resize", (3, 4, 4)) == 1.0)


def test_a_grey_16_bit_picture_keeps_its_range(tmp_path):
    a = np.full((10, 10), 65535 // 2, np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    x = images.prepare(tmp_path / "deep.png", "resize", (3, 4, 4))
    assert np.allclose(x, 128 / 255, atol=1 / 255)


def test_a_folder_image_and_the_same_file_given_to_predict_are_the_same_input(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=2)
    x, _, tx, *_ = folder.read(root, (3, 16, 16), test_fraction=0.5, seed=0)
    x = np.concatenate([x, tx])
    one = root / "cat" / "00.png"
    prepared = images.prepare(one, "resize", (3, 16, 16))
    assert any(np.array_equal(prepared, xi.astype(np.float32) * np.float32(1 / 255)) for xi in x)
    mine = images.load_picture(one, 3, 16, 16)
    np.testing.assert_array_equal(prepared, mine.astype(np.float32) * np.float32(1 / 255))


def test_digit_datasets_keep_mnist_preparation(run, digit_png):
    predictor = Predictor(saved.load(run))
    assert predictor.preparation == "digit"
    np.testing.assert_array_equal(predictor.prepare(digit_png), images.load_digit(digit_png))


# ------------------------------------------------------------------------------------ end to end
def colour_png(path: Path) -> Path:
    """A colour picture: red on the left, blue on the right."""
    a = np.zeros((45, 60, 3), np.uint8)
    a[:, :30] = (230, 20, 20)
    a[:, 30:] = (20, 20, 230)
    Image.fromarray(a).save(path)
    return path


def colour_digit_png(path: Path) -> Path:
    """A red '7' on yellow paper: a colour PNG that a digit dataset's model reads as a digit."""
    from conftest import digit_image

    ink = digit_image()[:, :, None]
    a = (1 - ink) * np.array([250, 240, 120]) + ink * np.array([200, 0, 0])
    Image.fromarray(a.astype(np.uint8)).save(path)
    return path


RUNS = {  # dataset -> (files, model overrides)
    "cifar10": (lambda root: cifar_files(root, per_batch=12, test=16), ["model=color_cnn"]),
    "kmnist": (lambda root: idx_files(root, datasets.SPLITS), ["model=seed_cnn"]),
    "emnist": (lambda root: idx_files(root, datasets.EMNIST_BALANCED, n_train=94, n_test=47, k=47, transposed=True),
               ["model=emnist_cnn"]),
    "folder": (lambda root: image_folder(root, per_class=6), ["model=color_cnn", "model.num_classes=3"]),
}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """``e2e(name)``: a 3-step training run on generated files of dataset ``name`` (made once):
    (run folder, data folder, the command's stderr)."""
    made = {}

    def get(name):
        if name not in made:
            base = tmp_path_factory.mktemp(name)
            root, out = base / "data", base / "run"
            files, model = RUNS[name]
            files(root)
            done = cli("netlab.train", f"data={name}", f"data.root={root}", *model, "train.max_steps=3",
                       "train.batch_size=16", "train.eval_every=3", "train.progress=false",
                       f"hydra.run.dir={out}", cwd=base)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr
            made[name] = (out, root, done.stderr + done.stdout)
        return made[name]
    return get


@pytest.mark.parametrize("name", list(RUNS))
def test_training_evaluate_predict_and_export_run_end_to_end(e2e, name, tmp_path):
    out, root, log = e2e(name)
    results = json.loads((out / "results.json").read_text())
    assert (out / "metrics.csv").is_file() and (out / "checkpoints" / "best.npz").is_file()
    assert 0.0 <= results["test_accuracy"] <= 1.0  # a number, not a claim: three steps on random files
    trained = saved.load(out)
    channels = trained.input_shape[0]
    assert isinstance(trained.mean, tuple) == (channels == 3)
    if name == "folder":
        assert trained.classes == ["cat", "dog", "owl"]
    evaluated = cli("netlab.evaluate", f"checkpoint={out}", f"data.root={root}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((out / "evaluation_best_test.json").read_text())["dataset"] == name
    png = (colour_png if DATASETS[name].prepare == "resize" else colour_digit_png)(tmp_path / "colour.png")
    predicted = cli("netlab.predict", f"checkpoint={out}", f"image={png}", "json=true", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["class"] in trained.classes
    if channels == 1:
        return  # the export of one-channel models is tested on MNIST (test_export.py)
    pytest.importorskip("safetensors")
    st = tmp_path / "w.safetensors"
    exported = cli("netlab.export", f"checkpoint={out}", "format=safetensors", f"out={st}", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    again = cli("netlab.predict", f"checkpoint={st}", f"image={png}", "json=true", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-6)
    pytest.importorskip("onnxruntime")
    onnx_out = tmp_path / "m.onnx"
    verified = cli("netlab.export", f"checkpoint={out}", f"out={onnx_out}", "verify=test", f"data.root={root}",
                   "data.verify=false", cwd=tmp_path)  # (the warning about a user's files would go to stdout)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)["verify"]
    assert report["max_abs_logit_difference"] < 1e-4 and report["netlab_accuracy"] == report["onnxruntime_accuracy"]


def test_the_colour_model_exports_per_channel_constants_and_says_what_it_takes(e2e, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("safetensors")
    out, root, _ = e2e("cifar10")
    trained = saved.load(out)
    path = tmp_path / "m.onnx"
    assert cli("netlab.export", f"checkpoint={out}", f"out={path}", "verify=none", cwd=tmp_path).returncode == 0
    model = onnx.load(path)
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert constants["mean"].shape == (1, 3, 1, 1) and constants["std"].shape == (1, 3, 1, 1)
    np.testing.assert_allclose(constants["mean"].ravel(), trained.mean, rtol=1e-6)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    meta = {p.key: p.value for p in model.metadata_props}
    assert dims == ["batch", 3, 32, 32] and meta["input"].startswith("image: float32 (N, 3, 32, 32)")
    assert "RGB" in meta["input"] and "digit" not in meta["input"]
    from netlab.exporters.safetensors import read_safetensors

    st = tmp_path / "w.safetensors"
    assert cli("netlab.export", f"checkpoint={out}", "format=safetensors", f"out={st}", cwd=tmp_path).returncode == 0
    _, meta = read_safetensors(st)
    assert json.loads(meta["mean"]) == list(trained.mean) and json.loads(meta["input_shape"]) == [3, 32, 32]
    outside = saved.load(st)
    assert outside.mean == trained.mean and outside.input_shape == (3, 32, 32)


def test_the_page_answers_a_colour_picture_with_the_input_in_colour(e2e, tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from netlab.web.app import make_app

    out, _, _ = e2e("cifar10")
    client = TestClient(make_app(Predictor(saved.load(out))), base_url="http://127.0.0.1")
    body = client.post("/api/predict", content=colour_png(tmp_path / "c.png").read_bytes()).json()
    shown = np.asarray(body["input"])
    assert shown.shape == (3, 32, 32) and shown[0, :, :14].min() > 0.8 and shown[2, :, :14].max() < 0.2
    assert "resized to 32x32" in body["prepared"] and len(body["probabilities"]) == 10


def test_a_browser_shows_an_uploaded_colour_picture_in_colour(e2e, tmp_path, spawn):
    import re
    import subprocess

    from conftest import browser, wait_for

    pytest.importorskip("starlette")
    driver = browser()  # or a skip saying what is missing, before anything is trained
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out, _, _ = e2e("cifar10")
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        server = spawn("netlab.serve", f"checkpoint={out}", "port=0", cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT)
    try:
        url = wait_for(lambda: re.search(r"http://127\.0\.0\.1:\d+/", log.read_text()), "the address", timeout=60,
                       proc=server).group(0)
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        driver.find_element(By.ID, "upload").send_keys(str(colour_png(tmp_path / "c.png")))
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "predicted").text.strip())
        left, right = driver.execute_script(
            "const t = document.getElementById('input').getContext('2d');"
            "return [Array.from(t.getImageData(30, 70, 1, 1).data), Array.from(t.getImageData(110, 70, 1, 1).data)];")
        assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60, (left, right)
        assert "resized to 32x32" in driver.find_element(By.ID, "input-hint").text
        assert driver.find_element(By.ID, "error").text == ""
    finally:
        driver.quit()
