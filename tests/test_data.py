"""IDX validation (and files that would exhaust memory), dataset lookup, the split,
normalisation, augmentation, batching, and a user's own digit images."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import netlab.data.images
from netlab import backend, data
from netlab.data import datasets, download, idx
from netlab.data.images import load_digit
from netlab.errors import DataError
from conftest import FIXTURE, KiB, MiB, digit_image, drawn, fixture_copy

SHARED = Path(os.environ.get("NETLAB_DATA", "")) / "mnist"
HAS_REAL = bool(os.environ.get("NETLAB_DATA")) and (SHARED / "train-images-idx3-ubyte.gz").exists()


def small(xp, **kw):
    return data.load(xp, "mnist", FIXTURE, verify=False, download=False, **kw)


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
    root = fixture_copy(tmp_path)
    labels = idx.parse(idx.read_bytes(root / "train-labels-idx1-ubyte.gz"))
    idx.write(root / "train-labels-idx1-ubyte.gz", labels[:-1])
    with pytest.raises(data.DataError, match="600 images but 599 labels"):
        data.load(backend.namespace("numpy"), "mnist", root, verify=False, download=False)


def test_label_out_of_range(tmp_path):
    root = fixture_copy(tmp_path)
    labels = idx.parse(idx.read_bytes(root / "t10k-labels-idx1-ubyte.gz")).copy()
    labels[3] = 12
    idx.write(root / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(data.DataError, match="label 12 outside 0..9"):
        data.load(backend.namespace("numpy"), "mnist", root, verify=False, download=False)


# ------------------------------------------------------------ small files that would exhaust memory
def idx_header(n, *dims, code=0x08):
    return bytes([0, 0, code, 1 + len(dims)]) + np.asarray([n, *dims], ">u4").tobytes()


def test_an_idx_header_asking_for_a_billion_images_is_refused_before_decompressing(tmp_path, monkeypatch):
    folder = fixture_copy(tmp_path / "data")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_header(10 ** 9, 28, 28) + b"\0" * 1000))
    idx.write(folder / "train-labels-idx1-ubyte.gz", np.zeros(10 ** 9 % 256, np.uint8))
    called = []
    monkeypatch.setattr(data.idx, "read_bytes", lambda *a, **k: called.append(a) or b"")
    with pytest.raises(DataError, match="1000000000 images but 0 labels"):
        data.load(data.pipeline.backend.namespace("numpy"), "mnist", folder, download=False)
    assert not called


def test_matching_counts_cannot_ask_for_more_than_the_bound(tmp_path):
    folder = fixture_copy(tmp_path / "data")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_header(4 * 10 ** 9, 28, 28)))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_header(4 * 10 ** 9)))
    with pytest.raises(DataError, match="refusing more than"):
        data.load(data.pipeline.backend.namespace("numpy"), "mnist", folder, download=False)


def test_absurd_header_sizes_do_not_overflow():
    data_bytes = idx_header(2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1, code=0x0E)
    with pytest.raises(DataError, match="truncated or corrupt"):
        idx.parse(data_bytes, "absurd", 3)


def test_a_gzip_bomb_stops_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "MAX_BYTES", 4 * MiB)
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(idx_header(100, 28, 28))
        for _ in range(16):
            f.write(b"\0" * MiB)
    assert path.stat().st_size < 64 * KiB
    with pytest.raises(DataError, match="more than 4,194,304 bytes once decompressed"):
        idx.read_bytes(path, idx.MAX_BYTES)


# ------------------------------------------------------------------------------- where data comes from
def test_a_users_folder_that_differs_from_the_official_files_is_used_with_a_warning(caplog):
    s = data.load(backend.namespace("numpy"), "mnist", FIXTURE, download=False)  # verify is on
    assert s.train_x.shape[0] == 540 and "4 of its files differ from the official mnist files" in caplog.text
    assert all(p.exists() for p in FIXTURE.iterdir())


def test_a_users_own_data_is_never_advised_deleted(tmp_path, caplog):
    folder = fixture_copy(tmp_path / "mine")
    data.load(data.pipeline.backend.namespace("numpy"), "mnist", folder, download=False)
    assert "differ from the official" in caplog.text and "delete" not in caplog.text.lower()


def test_a_damaged_file_in_the_download_cache_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NETLAB_DATA", raising=False)
    fixture_copy(tmp_path / "netlab" / "mnist")
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


def test_pixel_statistics_per_channel_across_chunks():
    """The histogram is summed 4096 images at a time: 9000 images cross two chunk boundaries,
    and each channel has its own mean and deviation (as float64 arithmetic gives them)."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (9000, 3, 4, 5), dtype=np.uint8)
    images[4096:, 1] //= 2  # the second chunk differs, so a chunk counted twice or skipped shows
    mean, std = data.pipeline.statistics(images)
    as_float = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, as_float.std(axis=(0, 2, 3)), rtol=1e-12)
    with pytest.raises(DataError, match="8-bit images; got float32"):
        data.pipeline.statistics(images.astype(np.float32))


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


# ------------------------------------------------------------------------- a user's own digit images
@pytest.mark.parametrize("dark_on_light", [True, False])
def test_user_digit_is_prepared_like_mnist(tmp_path, dark_on_light):
    images, _ = datasets.load_split(datasets.DATASETS["mnist"], FIXTURE, "test", verify=False)
    images = images[:, 0]  # (N, 1, 28, 28): one channel
    original = images[1].astype(np.float64) / 255
    drawn(images[1], dark_on_light).save(tmp_path / "d.png")
    prepared = load_digit(tmp_path / "d.png")
    assert prepared.shape == (28, 28) and prepared.max() == pytest.approx(1.0, abs=0.02)
    assert prepared[0].max() == 0 and prepared[:, 0].max() == 0  # light digit on black, with a margin
    assert np.corrcoef(prepared.ravel(), original.ravel())[0, 1] > 0.8


def test_blank_image_is_refused(tmp_path):
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    with pytest.raises(Exception, match="no digit found"):
        load_digit(tmp_path / "blank.png")


def test_16_bit_grayscale_reads_like_8_bit(tmp_path):
    a = digit_image()
    a[a > 0] = np.linspace(0.2, 1.0, int((a > 0).sum()))  # graded ink, as a scan or an anti-aliased drawing
    Image.fromarray((a * 60000).astype(np.uint16)).save(tmp_path / "d16.png")
    Image.fromarray((a * 255).astype(np.uint8)).save(tmp_path / "d8.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I;16")
    np.testing.assert_allclose(load_digit(tmp_path / "d16.png"), load_digit(tmp_path / "d8.png"), atol=0.02)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_images_keep_their_range(tmp_path, scale):
    Image.fromarray((digit_image() * scale).astype(np.float32), mode="F").save(tmp_path / "f.tiff")
    Image.fromarray((digit_image() * 255).astype(np.uint8)).save(tmp_path / "d8.png")
    np.testing.assert_allclose(load_digit(tmp_path / "f.tiff"), load_digit(tmp_path / "d8.png"), atol=0.02)


@pytest.mark.parametrize("orientation,transpose", [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                                                   (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied(tmp_path, orientation, transpose):
    """A phone stores a photo sideways plus an orientation tag: the digit must come out upright."""
    upright = Image.fromarray((digit_image(dark_on_light=True) * 255).astype(np.uint8)).convert("RGB")
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright.transpose(transpose).save(tmp_path / "tagged.jpg", quality=95, exif=exif)
    np.testing.assert_allclose(load_digit(tmp_path / "tagged.jpg"), load_digit(tmp_path / "upright.jpg"), atol=0.1)


def test_a_decompression_bomb_image_is_refused(tmp_path):
    Image.new("L", (8000, 8000), 0).save(tmp_path / "bomb.png", optimize=True)  # 64 Mpx in a few KiB
    assert (tmp_path / "bomb.png").stat().st_size < 200 * KiB
    with pytest.raises(DataError, match="pixels are refused"):
        load_digit(tmp_path / "bomb.png")


def test_a_huge_image_file_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(data.images, "MAX_FILE_BYTES", 10 * KiB)
    Image.fromarray((np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="bytes; a digit image over 10,240 bytes is refused"):
        load_digit(tmp_path / "big.png")


# ------------------------------------------------------------------------ augmentation: the wiring
# What reaches the transforms, and what comes out, over any settings: the angle, the two shifts
# and each probability alone (the tests above check each transform given its arguments).
import math  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from netlab.data import augment as augment_module  # noqa: E402

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NP = backend.namespace("numpy")
OFF = dict(rotate_p=0.0, translate_p=0.0, blotch_p=0.0, noise_p=0.0)


def affine_arguments(monkeypatch, n=3000, seed=0, **settings_):
    """The (angle, shift x, shift y) arrays that Augment hands to the affine transform for a batch of n."""
    seen = {}

    def spy(xp, x, angle, dx, dy):
        seen.update(angle=backend.to_numpy(angle), dx=backend.to_numpy(dx), dy=backend.to_numpy(dy))
        return x

    monkeypatch.setattr(augment_module, "affine", spy)
    data.Augment(**settings_)(NP, NP.zeros((n, 1, 2, 2), dtype=NP.float64), backend.Generator(seed))
    return seen.get("angle"), seen.get("dx"), seen.get("dy")


def _near(fraction, p, n):
    return abs(fraction - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@PROPERTY
@given(st.sampled_from([0.0, 0.15, 0.5, 0.8, 1.0]), st.sampled_from([0.0, 0.3, 0.65, 1.0]),
       st.floats(0.5, 180.0), st.floats(0.1, 5.0), st.integers(0, 2 ** 16))
def test_angles_and_shifts_reach_the_transform_within_their_ranges(rotate_p, translate_p, degrees, pixels, seed):
    with pytest.MonkeyPatch.context() as mp:
        angle, dx, dy = affine_arguments(mp, seed=seed, rotate_p=rotate_p, translate_p=translate_p,
                                         degrees=degrees, pixels=pixels)
    if rotate_p == translate_p == 0.0:
        assert angle is None  # nothing to resample
        return
    n, limit = len(angle), math.radians(degrees)
    rotated, shifted_x, shifted_y = angle != 0, dx != 0, dy != 0
    # each probability alone: rotations with rotate_p; shifts with translate_p, one choice per
    # image for both axes (an image is shifted or not)
    assert _near(rotated.mean(), rotate_p, n) and _near(shifted_x.mean(), translate_p, n), (rotated.mean(), shifted_x.mean())
    np.testing.assert_array_equal(shifted_x, shifted_y)
    # within the configured ranges (radians, not degrees), and spread over the whole of them
    assert np.abs(angle).max() <= limit * (1 + 1e-12) and np.abs(dx).max() <= pixels and np.abs(dy).max() <= pixels
    for values, bound in ((angle[rotated], limit), (dx[shifted_x], pixels), (dy[shifted_y], pixels)):
        if len(values) >= 200:
            assert values.max() > 0.9 * bound and values.min() < -0.9 * bound
            assert abs(values.mean()) < 0.15 * bound
    # the two shift directions are independent draws, made for the images picked once
    both = shifted_x & shifted_y
    if both.sum() >= 200:
        assert not np.array_equal(dx[both], dy[both]) and abs(np.corrcoef(dx[both], dy[both])[0, 1]) < 0.15
        assert _near(both.mean(), translate_p, n)  # one choice per image moves it on both axes
    if 0 < rotate_p < 1 and 0 < translate_p < 1:  # the rotation is picked apart from the shifts
        assert abs(np.corrcoef(rotated, shifted_x)[0, 1]) < 0.1


def test_an_image_is_shifted_with_probability_translate_p(monkeypatch):
    """translate_p is the probability that an image is shifted (AugmentConfig), not that each
    axis is, which would shift 1 - (1 - p)^2 of the images (0.75 at the default 0.5)."""
    _, dx, dy = affine_arguments(monkeypatch, n=4000, rotate_p=0.0, translate_p=0.5)
    assert _near(((dx != 0) | (dy != 0)).mean(), 0.5, 4000)


@pytest.mark.parametrize("rotate_p,translate_p", [(1.0, 0.0), (0.0, 1.0), (0.3, 0.7), (0.7, 0.3)])
def test_each_probability_is_honoured_alone(monkeypatch, rotate_p, translate_p):
    """rotate_p=1 with translate_p=0 rotates every image and shifts none, and the other way
    round; unequal probabilities cannot be mistaken for one another."""
    angle, dx, dy = affine_arguments(monkeypatch, n=4000, rotate_p=rotate_p, translate_p=translate_p)
    for values, p in ((angle, rotate_p), (dx, translate_p), (dy, translate_p)):
        if p in (0.0, 1.0):
            assert np.all((values != 0) == bool(p))
        else:
            assert _near((values != 0).mean(), p, 4000)


def _bar():
    """A horizontal bar through the centre of a 15x15 image, clear of the sides by 4 pixels."""
    img = np.zeros((15, 15))
    img[7, 4:11] = 1.0
    return img


def _moments(images):
    """Centre of mass (row, column) and the row-column covariance of each image."""
    rows, cols = np.mgrid[:images.shape[-2], :images.shape[-1]]
    mass = images.sum(axis=(-2, -1))
    r = (images * rows).sum(axis=(-2, -1)) / mass
    c = (images * cols).sum(axis=(-2, -1)) / mass
    cov = (images * (rows - r[:, None, None]) * (cols - c[:, None, None])).sum(axis=(-2, -1)) / mass
    return r, c, cov


def test_rotation_alone_never_shifts_and_translation_alone_never_rotates(xp):
    """On the real transform: with rotate_p=1 and translate_p=0 every bar turns about the
    centre (its centre of mass stays, its row-column covariance appears); with rotate_p=0
    and translate_p=1 every bar moves and stays level (a bilinear shift is separable)."""
    x = backend.from_numpy(xp, np.broadcast_to(_bar(), (300, 1, 15, 15)).copy(), dtype=xp.float64)
    turned = backend.to_numpy(data.Augment(**dict(OFF, rotate_p=1.0, degrees=30.0))(xp, x, backend.Generator(4)))[:, 0]
    r, c, cov = _moments(turned)
    np.testing.assert_allclose(r, 7.0, atol=1e-9)
    np.testing.assert_allclose(c, 7.0, atol=1e-9)
    assert np.all(np.abs(cov) > 1e-6) and (cov > 0).mean() > 0.3 and (cov < 0).mean() > 0.3
    moved = backend.to_numpy(data.Augment(**dict(OFF, translate_p=1.0, pixels=2.0))(xp, x, backend.Generator(4)))[:, 0]
    r, c, cov = _moments(moved)
    np.testing.assert_allclose(cov, 0.0, atol=1e-9)
    assert np.all(np.abs(r - 7.0) > 0) and np.all(np.abs(c - 7.0) > 0)
    assert np.abs(r - 7.0).max() <= 2.0 + 1e-9 and np.abs(c - 7.0).max() <= 2.0 + 1e-9
    assert abs(np.corrcoef(r, c)[0, 1]) < 0.25  # the two directions are independent


@pytest.mark.parametrize("blotch_p,noise_p", [(1.0, 0.0), (0.0, 1.0), (0.25, 0.6), (0.6, 0.25)])
def test_blotch_and_noise_probabilities_are_honoured_alone(xp, blotch_p, noise_p):
    """On grey images (0.5): a blotch makes exact zeros in a rectangle of blotch_min..blotch_max
    sides, noise (added after it) changes pixels; each with its own probability."""
    n = 2000
    x = xp.full((n, 1, 12, 12), 0.5, dtype=xp.float64)
    aug = data.Augment(**dict(OFF, blotch_p=blotch_p, noise_p=noise_p, blotch_min=2, blotch_max=5, noise_std=0.05))
    out = backend.to_numpy(aug(xp, x, backend.Generator(9)))[:, 0]
    blotched, noisy = (out == 0).any(axis=(1, 2)), ((out != 0) & (out != 0.5)).any(axis=(1, 2))
    for seen, p in ((blotched, blotch_p), (noisy, noise_p)):
        assert _near(seen.mean(), p, n) if 0 < p < 1 else np.all(seen == bool(p)), (seen.mean(), p)
    sides = set()
    for img in out[blotched & ~noisy]:
        rows, cols = np.nonzero(img == 0)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 2 <= h <= 5 and 2 <= w <= 5 and len(rows) == h * w
        sides |= {h, w}
    if (blotched & ~noisy).sum() > 100:
        assert sides == {2, 3, 4, 5}  # every size from blotch_min to blotch_max
    if noisy.sum() > 100:
        changed = out[noisy & ~blotched]
        assert abs((changed - 0.5).std() - 0.05) < 0.003  # noise_std reaches the noise


# ------------------------------------------------------- the random numbers at their edge values
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_uniform_numbers_stay_inside_the_open_interval_at_the_edge_bits(monkeypatch, dtype):
    """The smallest and largest 32-bit draws give numbers strictly inside (0, 1): Box-Muller takes
    log(u), and a probability of 1 must always pick (u < 1). In float32, (2**24 - 1) + 0.5 rounds
    to 2**24: the top draw once gave exactly 1.0."""
    edges = np.array([0, 0xFF, 0x100, 0xFFFFFEFF, 0xFFFFFF00, 0xFFFFFFFF], dtype=np.uint32)
    gen = backend.Generator(0)
    monkeypatch.setattr(gen, "bits", lambda xp, shape, device=None: xp.asarray(edges[:math.prod(shape)]))
    u = backend.to_numpy(gen.random(NP, (6,), getattr(NP, dtype)))
    assert np.all(u > 0) and np.all(u < 1), u
    assert u[0] == u[1] and u[0] < u[2] and u[3] < u[5]  # the lowest 8 bits are not used; the rest are


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_box_muller_is_finite_at_the_edge_bits(monkeypatch, dtype):
    """normal() of the extreme draws: finite, and as large as float precision allows (|z| about 5.9
    for u = 2^-25), never log(0) = -inf or NaN; noise built on it stays in [0, 1]."""
    edges = np.array([0, 0xFFFFFFFF, 0, 0x80000000], dtype=np.uint32)
    gen = backend.Generator(0)
    monkeypatch.setattr(gen, "bits", lambda xp, shape, device=None: xp.asarray(
        np.resize(edges, math.prod(shape)).reshape(shape)))
    z = backend.to_numpy(gen.normal(NP, (4,), getattr(NP, dtype)))
    assert np.all(np.isfinite(z)) and 5.5 < np.abs(z).max() < 6.5, z
    out = backend.to_numpy(data.noise(NP, NP.full((4, 1, 2, 2), 0.5, dtype=getattr(NP, dtype)), gen, 1.0, 0.5))
    assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
