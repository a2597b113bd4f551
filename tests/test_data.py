"""IDX validation, dataset lookup, the split, normalisation, augmentation and batching."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from netlab import backend, data
from netlab.data import datasets, download, idx

FIXTURE = Path(__file__).parent / "data" / "mnist-small"
SHARED = Path(os.environ.get("NETLAB_DATA", "")) / "mnist"
HAS_REAL = bool(os.environ.get("NETLAB_DATA")) and (SHARED / "train-images-idx3-ubyte.gz").exists()


def small(xp, **kw):
    return data.load(xp, "mnist", FIXTURE, verify=False, download=False, **kw)


def copy_fixture(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for p in FIXTURE.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    return tmp_path


# ------------------------------------------------------------------------------ IDX errors
def test_idx_round_trip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        idx.write(tmp_path / name, a)
        np.testing.assert_array_equal(idx.parse(idx.read_bytes(tmp_path / name), name, 3), a)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b"\x08\x03" + b[2:], "bad magic number"),
    (lambda b: b[:2] + b"\x07" + b[3:], "bad magic number"),
    (lambda b: b[:-5], "truncated or corrupt"),
    (lambda b: b + b"\x00", "truncated or corrupt"),
    (lambda b: b[:3] + b"\x02" + b[4:], "has 2 dimensions, expected 3"),
    (lambda b: b[:2], "too short"),
])
def test_idx_errors_name_file_and_problem(tmp_path, mutate, message):
    path = tmp_path / "images.idx"
    idx.write(path, np.zeros((2, 3, 4), np.uint8))
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(data.DataError, match=message) as err:
        idx.parse(idx.read_bytes(path), str(path), 3)
    assert "images.idx" in str(err.value)


def test_corrupt_gzip_is_reported(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100)[:-10])
    with pytest.raises(data.DataError, match=r"x\.gz: corrupt gzip"):
        idx.read_bytes(path)


def test_count_mismatch_between_images_and_labels(tmp_path):
    root = copy_fixture(tmp_path)
    labels = idx.parse(idx.read_bytes(root / "train-labels-idx1-ubyte.gz"))
    idx.write(root / "train-labels-idx1-ubyte.gz", labels[:-1])
    with pytest.raises(data.DataError, match="600 images but 599 labels"):
        data.load(backend.namespace("numpy"), "mnist", root, verify=False, download=False)


def test_label_out_of_range(tmp_path):
    root = copy_fixture(tmp_path)
    labels = idx.parse(idx.read_bytes(root / "t10k-labels-idx1-ubyte.gz")).copy()
    labels[3] = 12
    idx.write(root / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(data.DataError, match="label 12 outside 0..9"):
        data.load(backend.namespace("numpy"), "mnist", root, verify=False, download=False)


def test_a_users_folder_that_differs_from_the_official_files_is_used_with_a_warning(caplog):
    s = data.load(backend.namespace("numpy"), "mnist", FIXTURE, download=False)  # verify is on
    assert s.train_x.shape[0] == 540 and "differs from the official mnist file" in caplog.text
    assert all(p.exists() for p in FIXTURE.iterdir())


def test_a_damaged_file_in_the_download_cache_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NETLAB_DATA", raising=False)
    copy_fixture(tmp_path / "netlab" / "mnist")
    with pytest.raises(data.DataError, match="netlab's download cache .* delete it and it will be downloaded"):
        data.load(backend.namespace("numpy"), "mnist", download=False)
    assert len(list((tmp_path / "netlab" / "mnist").iterdir())) == 4  # nothing deleted behind the user's back


def test_offline_machines_get_told_where_to_put_the_files(tmp_path):
    with pytest.raises(data.DataError, match="downloads are off .NETLAB_OFFLINE is set.*data.root"):
        data.load(backend.namespace("numpy"), "mnist", tmp_path)


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    with pytest.raises(data.DataError, match=f"not found in {tmp_path}.*data.root"):
        data.load(backend.namespace("numpy"), "mnist", tmp_path, download=False)


def test_download_failure_is_atomic_and_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("NETLAB_OFFLINE")  # urlopen is replaced below: no network is used
    def refuse(*args, **kwargs):
        raise OSError("network is off")

    monkeypatch.setattr(download.urllib.request, "urlopen", refuse)
    with pytest.raises(data.DataError, match="could not be downloaded.*network is off"):
        data.load(backend.namespace("numpy"), "mnist", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


def test_download_verifies_and_renames(tmp_path, monkeypatch):
    monkeypatch.delenv("NETLAB_OFFLINE")  # urlopen is replaced below: no network is used
    payload = (FIXTURE / "train-images-idx3-ubyte.gz").read_bytes()

    class Response:
        headers = {"Content-Length": str(len(payload))}

        def __init__(self):
            self.chunks = [payload]

        def read(self, n):
            return self.chunks.pop() if self.chunks else b""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response())
    spec = datasets.DatasetSpec("toy", ("mirror/",), {}, ("0",))
    path = download.fetch(spec, "train-images-idx3-ubyte", tmp_path)
    assert path.read_bytes() == payload and [p.name for p in tmp_path.iterdir()] == [path.name]
    bad = datasets.DatasetSpec("toy", ("mirror/",), {"train-images-idx3-ubyte": "0" * 64}, ("0",))
    with pytest.raises(data.DataError, match="checksum mismatch"):
        download.fetch(bad, "train-images-idx3-ubyte", tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_default_root_follows_netlab_data(monkeypatch, tmp_path):
    monkeypatch.setenv("NETLAB_DATA", str(tmp_path))
    assert data.default_root("mnist") == tmp_path / "mnist"
    monkeypatch.delenv("NETLAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.default_root("fashion_mnist") == tmp_path / "netlab" / "fashion_mnist"


@pytest.mark.skipif(not HAS_REAL, reason="NETLAB_DATA does not point at the real MNIST")
def test_real_mnist_verifies():
    s = data.load(backend.namespace("numpy"), "mnist", download=False)
    assert (s.train_x.shape[0], s.val_x.shape[0], s.test_x.shape[0]) == (54000, 6000, 10000)
    assert abs(s.mean - 0.1307) < 1e-3 and abs(s.std - 0.3081) < 1e-3


# ----------------------------------------------------------------------------------- split
def test_split_is_disjoint_complete_and_seeded():
    xp = backend.namespace("numpy")
    s = small(xp, seed=3, val_fraction=0.1)
    train, val = set(s.train_indices.tolist()), set(s.val_indices.tolist())
    assert not train & val and len(train | val) == 600 and len(val) == 60
    again = small(xp, seed=3, val_fraction=0.1)
    np.testing.assert_array_equal(again.val_indices, s.val_indices)
    np.testing.assert_array_equal(backend.to_numpy(again.train_x), backend.to_numpy(s.train_x))
    assert not np.array_equal(small(xp, seed=4).val_indices, s.val_indices)
    # labels travel with their images
    raw = idx.parse(idx.read_bytes(FIXTURE / "train-labels-idx1-ubyte.gz"))
    np.testing.assert_array_equal(backend.to_numpy(s.val_y), raw[s.val_indices])


def test_normalisation_statistics_come_from_training_images_only():
    s = small(backend.namespace("numpy"), seed=1)
    raw = idx.parse(idx.read_bytes(FIXTURE / "train-images-idx3-ubyte.gz")).astype(np.float64) / 255
    assert s.mean == pytest.approx(raw[s.train_indices].mean(), rel=1e-12)
    assert s.std == pytest.approx(raw[s.train_indices].std(), rel=1e-12)
    assert s.mean != pytest.approx(raw.mean(), rel=1e-9)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1e-6])
def test_bad_val_fraction(fraction):
    with pytest.raises(data.DataError, match="val_fraction"):
        small(backend.namespace("numpy"), val_fraction=fraction)


def test_offline_augmentation_only_extends_training_images():
    xp = backend.namespace("numpy")
    s = small(xp)
    x, y = data.augment_offline(xp, s.train_x, s.train_y, data.Augment(), 2, backend.Generator(0))
    n = s.train_x.shape[0]
    assert x.shape[0] == 3 * n and s.val_x.shape[0] == 60
    np.testing.assert_array_equal(backend.to_numpy(x[:n]), backend.to_numpy(s.train_x))
    np.testing.assert_array_equal(backend.to_numpy(y[n:2 * n]), backend.to_numpy(s.train_y))
    # augmented copies are built from training originals, never from validation images
    val = backend.to_numpy(s.val_x).reshape(60, -1)
    aug = backend.to_numpy(x[n:]).reshape(2 * n, -1)
    assert min(np.abs(aug - v).sum(axis=1).min() for v in val) > 0


# ---------------------------------------------------------------------------- augmentation
def digit(xp):
    img = np.zeros((1, 1, 9, 13))
    img[0, 0, 1:4, 5] = 1.0  # an asymmetric stroke, 4 pixels clear of the sides
    img[0, 0, 6, 4:9] = 0.5
    return img, backend.from_numpy(xp, img, dtype=xp.float64)


def test_rotation_by_90_degrees_is_rot90(xp):
    img = np.zeros((1, 1, 7, 7))
    img[0, 0, 1:3, 3] = 1.0
    img[0, 0, 5, 1:5] = 0.5
    out = data.affine(xp, backend.from_numpy(xp, img, dtype=xp.float64),
                      *(backend.from_numpy(xp, [v], dtype=xp.float64) for v in (np.pi / 2, 0.0, 0.0)))
    np.testing.assert_allclose(backend.to_numpy(out)[0, 0], np.rot90(img[0, 0], k=1), atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, -3])
def test_translation_by_k_pixels_moves_mass_by_k(xp, k):
    img, x = digit(xp)
    zero, shift = (backend.from_numpy(xp, [v], dtype=xp.float64) for v in (0.0, float(k)))
    out = backend.to_numpy(data.affine(xp, x, zero, shift, zero))[0, 0]
    np.testing.assert_allclose(out, np.roll(img[0, 0], k, axis=1) * _kept(img[0, 0], k), atol=1e-12)
    cols = np.arange(13)
    centre = lambda a: (a.sum(axis=0) * cols).sum() / a.sum()
    assert centre(out) - centre(img[0, 0]) == pytest.approx(k, abs=1e-9)
    down = backend.to_numpy(data.affine(xp, x, zero, zero, backend.from_numpy(xp, [1.0], dtype=xp.float64)))[0, 0]
    np.testing.assert_allclose(down[1:], img[0, 0, :-1])


def _kept(a, k):
    keep = np.ones_like(a)
    if k > 0:
        keep[:, :k] = 0
    else:
        keep[:, k:] = 0
    return keep


def test_noise_has_the_set_std(xp):
    x = xp.full((400, 1, 28, 28), 0.5, dtype=xp.float32)
    out = backend.to_numpy(data.noise(xp, x, backend.Generator(0), 1.0, 0.1))
    assert abs(out.std() - 0.1) < 0.002 and abs(out.mean() - 0.5) < 0.002
    untouched = backend.to_numpy(data.noise(xp, x, backend.Generator(0), 0.0, 0.1))
    assert np.all(untouched == 0.5)


def test_blotch_erases_one_rectangle_of_the_set_size(xp):
    x = xp.ones((50, 1, 12, 10), dtype=xp.float32)
    out = backend.to_numpy(data.blotch(xp, x, backend.Generator(1), 1.0, 2, 4))
    for img in out[:, 0]:
        rows, cols = np.nonzero(img == 0)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 2 <= h <= 4 and 2 <= w <= 4 and len(rows) == h * w


def test_augmentation_is_identical_on_every_backend(xp):
    np_xp = backend.namespace("numpy")
    s = small(np_xp, limit=64)
    aug = data.Augment(rotate_p=1.0, translate_p=1.0, blotch_p=0.5, noise_p=0.5)
    ref = backend.to_numpy(aug(np_xp, s.train_x, backend.Generator(5)))
    x = backend.from_numpy(xp, backend.to_numpy(s.train_x))
    out = backend.to_numpy(aug(xp, x, backend.Generator(5)))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert np.abs(ref - backend.to_numpy(s.train_x)).max() > 0.5


def test_augment_rejects_bad_settings():
    with pytest.raises(ValueError, match="rotate_p"):
        data.Augment(rotate_p=1.5)
    with pytest.raises(ValueError, match="blotch_min"):
        data.Augment(blotch_min=5, blotch_max=2)


# --------------------------------------------------------------------------------- batches
def test_loader_shuffles_per_epoch_deterministically(xp):
    x = backend.from_numpy(xp, np.arange(10, dtype=np.float32)[:, None, None, None])
    y = backend.from_numpy(xp, np.arange(10))
    loader = data.Loader(xp, x, y, 4, shuffle=True, seed=1)
    assert len(loader) == 3
    epoch0 = [backend.to_numpy(b[1]) for b in loader.batches(0)]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(10))
    assert [len(b) for b in epoch0] == [4, 4, 2]
    epoch1 = np.concatenate([backend.to_numpy(b[1]) for b in loader.batches(1)])
    assert not np.array_equal(np.concatenate(epoch0), epoch1)
    resumed = [backend.to_numpy(b[1]) for b in loader.batches(0, start=1)]
    np.testing.assert_array_equal(np.concatenate(resumed), np.concatenate(epoch0[1:]))
    xs = [backend.to_numpy(b[0]).ravel() for b in loader.batches(0)]
    np.testing.assert_array_equal(np.concatenate(xs), np.concatenate(epoch0))  # x stays with y


def test_loader_normalises_and_keeps_order_without_shuffle():
    xp = backend.namespace("numpy")
    s = small(xp)
    loader = data.Loader(xp, s.train_x, s.train_y, 1000, mean=s.mean, std=s.std)
    (xb, yb), = list(loader)
    assert abs(float(xp.mean(xb))) < 1e-4 and abs(float(xp.std(xb)) - 1) < 1e-3
    np.testing.assert_array_equal(backend.to_numpy(yb), backend.to_numpy(s.train_y))
