"""The checkpoint format: round trip, atomic writes, refusals of what is not a checkpoint, of
damaged fields (one paragraph, with the right advice), and of hostile archives (read from their
directory, bounded before unpacking)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from netlab import checkpoint
from netlab.cli import predict as predict_app
from netlab.errors import CheckpointError
from netlab.metrics import COLUMNS
from conftest import KiB, MiB, assert_one_paragraph, in_process, tampered


def example(step=7) -> checkpoint.Checkpoint:
    return checkpoint.Checkpoint(
        model={"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "0.bias": np.ones(2, np.float32)},
        optimizer={"steps": np.asarray(step), "state.0.weight.exp_avg": np.full((2, 3), 0.5, np.float32)},
        rngs={"dropout": {"seed": 11, "counter": 3}, "augment": {"seed": 12, "counter": 4}},
        counters=dict(step=step, epoch=1, batch=2, best_step=5, evals_since_best=1, images=224),
        running={"loss": np.float64(1.5), "correct": np.float64(3.0), "count": 32},
        metrics={"step": [5, 5, 5], "epoch": [0.5] * 3, "split": ["train", "val", "test"], "loss": [1.0, 2.0, 3.0],
                 "accuracy": [0.1, 0.2, 0.3], "lr": [1e-3] * 3, "elapsed_s": [1.0] * 3},
        best_val=0.2, train_time_s=3.5, elapsed_s=4.5, mean=0.13, std=0.31, config="seed: 0\n")


def test_round_trip_keeps_every_field(tmp_path):
    path = checkpoint.write(tmp_path / "checkpoints" / "last.npz", example())
    back = checkpoint.read(tmp_path)  # a run directory resolves to checkpoints/last.npz
    ref = example()
    for key in ("rngs", "counters", "best_val", "train_time_s", "elapsed_s", "mean", "std", "config"):
        assert getattr(back, key) == getattr(ref, key), key
    for k, v in ref.model.items():
        np.testing.assert_array_equal(back.model[k], v)
    np.testing.assert_array_equal(back.optimizer["state.0.weight.exp_avg"], ref.optimizer["state.0.weight.exp_avg"])
    assert back.running["count"] == 32 and float(back.running["loss"]) == 1.5
    assert [str(s) for s in back.metrics["split"]] == ["train", "val", "test"] and list(back.metrics) == list(COLUMNS)
    with np.load(path, allow_pickle=False) as f:  # plain arrays, readable without pickle
        assert int(f["format"]) == checkpoint.FORMAT and int(f["step"]) == 7


def test_a_write_that_fails_part_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    checkpoint.write(path, example(step=1))

    def full_disk(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space"):
        checkpoint.write(path, example(step=2))
    assert checkpoint.read(path).counters["step"] == 1
    assert os.listdir(tmp_path) == ["last.npz"]  # no temporary file left behind


def test_interrupt_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    checkpoint.write(path, example(step=1))
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write(path, example(step=2))
    assert checkpoint.read(path).counters["step"] == 1 and os.listdir(tmp_path) == ["last.npz"]


@pytest.mark.parametrize("content,message", [
    (b"", "not a netlab checkpoint: it is not an .npz archive"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a netlab checkpoint: it is not an .npz archive"),
    (None, "not found"),
])
def test_what_is_not_a_checkpoint_is_refused(tmp_path, content, message):
    path = tmp_path / "x.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(path)


def test_foreign_npz_and_missing_fields_are_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a netlab checkpoint"):
        checkpoint.read(tmp_path / "foreign.npz")
    arrays = example().to_arrays()
    del arrays["run_count"]
    np.savez(tmp_path / "partial.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(CheckpointError, match="lacks the field 'run_count'"):
        checkpoint.read(tmp_path / "partial.npz")


# ------------------------------------------------------------------ damaged fields: one paragraph
def counters_without(key):
    return lambda a: a.pop(key)


CHECKPOINT_DAMAGE = [
    *[(f"no {key}", counters_without(key), f"lacks the field '{key}'")
      for key in ("step", "epoch", "batch", "best_step", "evals_since_best", "images", "run_count", "data_mean",
                  "data_std", "metrics.loss", "best_val")],
    ("format 2", lambda a: a.__setitem__("format", np.asarray(2)), "format 2; this netlab reads format 1"),
    ("format as text", lambda a: a.__setitem__("format", np.asarray("one")), "this netlab reads format 1"),
    ("no format", lambda a: a.pop("format"), "no config or format field"),
    ("step negative", lambda a: a.__setitem__("step", np.asarray(-3)), "field 'step' must be an integer >= 0"),
    ("step fractional", lambda a: a.__setitem__("step", np.asarray(2.5)), "field 'step' must be an integer"),
    ("step a vector", lambda a: a.__setitem__("step", np.asarray([1, 2])), "field 'step' must be an integer"),
    ("mean as text", lambda a: a.__setitem__("data_mean", np.asarray("0.1")), "'data_mean' must be a finite number"),
    ("metrics of unequal length", lambda a: a.__setitem__("metrics.loss", a["metrics.loss"][:-1]),
     "columns of one dimension and equal length"),
    ("rng counter negative", lambda a: a.__setitem__("rng.dropout.counter", np.asarray(-1)),
     "'rng.dropout.counter' must be an integer >= 0"),
    ("config as a number", lambda a: a.__setitem__("config", np.asarray(3)), "'config' must be text"),
    ("NaN optimizer state", lambda a: a.__setitem__("optim.state.0.weight.exp_avg",
                                                    a["optim.state.0.weight.exp_avg"] * np.nan), "holds NaN"),
]


@pytest.mark.parametrize("case,damage,message", CHECKPOINT_DAMAGE, ids=[c[0] for c in CHECKPOINT_DAMAGE])
def test_damaged_checkpoint_fields_get_one_paragraph(run, digit_png, tmp_path, capsys, case, damage, message):
    path = tampered(run, tmp_path, damage)
    status, err = in_process(predict_app.predict, "predict", f"checkpoint={path}", f"image={digit_png}",
                             capsys=capsys)
    assert_one_paragraph(err, status)
    assert message in err


def test_nan_in_optimizer_state_is_not_blamed_on_the_lr(run, digit_png, tmp_path, capsys):
    def damage(a):
        a["optim.state.0.weight.exp_avg"] = a["optim.state.0.weight.exp_avg"] * np.nan

    status, err = in_process(predict_app.predict, "predict", f"checkpoint={tampered(run, tmp_path, damage)}",
                             f"image={digit_png}", capsys=capsys)
    assert "optimizer state" in err and "lr" not in err.replace("optim.", "")


def test_a_picture_given_as_checkpoint_is_not_advised_to_unpickle(digit_png, capsys):
    status, err = in_process(predict_app.predict, "predict", f"checkpoint={digit_png}", f"image={digit_png}",
                             capsys=capsys)
    assert "not an .npz archive" in err and "pickle" not in err


# ---------------------------------------------------- hostile archives: refused from their directory
def hostile_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return path


def real_npy(a) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asarray(a), allow_pickle=False)
    return out.getvalue()


def header_only(shape, dtype="<f4") -> bytes:
    """A .npy header that promises an array of ``shape``, with no data after it."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


HOSTILE_ARCHIVES = [
    ("array header claims 10^12 floats", lambda: {"format.npy": real_npy(1), "config.npy": real_npy("a: 1"),
                                                  "model.0.weight.npy": header_only((10 ** 6, 10 ** 6))},
     "more than the archive holds"),
    ("pickled object array", lambda: {"format.npy": real_npy(1), "config.npy": real_npy("a: 1"),
                                      "model.0.weight.npy": header_only((3,), "|O")}, "numbers and text only"),
    ("member that is not .npy", lambda: {"format.npy": real_npy(1), "evil.py": b"import os"}, "holds 'evil.py'"),
    ("member that is not an array", lambda: {"format.npy": real_npy(1), "config.npy": b"not an array at all"},
     "is not a .npy array"),
    ("20,000 members", lambda: {f"a{i}.npy": real_npy(0) for i in range(20_000)}, "holds 20000 arrays"),
]


@pytest.mark.parametrize("case,members,message", HOSTILE_ARCHIVES, ids=[c[0] for c in HOSTILE_ARCHIVES])
def test_hostile_archives_are_refused_from_their_directory(tmp_path, case, members, message):
    path = hostile_npz(tmp_path / "hostile.npz", members())
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read(path)


def test_an_archive_that_unpacks_past_the_bound_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_BYTES", 1 * MiB)
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("format.npy", real_npy(1))
        z.writestr("model.0.weight.npy", real_npy(np.zeros(2 * MiB // 4, np.float32)))
    assert path.stat().st_size < 64 * KiB
    with pytest.raises(CheckpointError, match="more than 1,048,576 bytes once unpacked"):
        checkpoint.read(path)


def test_an_overlong_embedded_config_is_refused(run, tmp_path):
    def change(a):
        a["config"] = np.asarray("#" * (checkpoint.MAX_CONFIG_CHARS + 1))

    with pytest.raises(CheckpointError, match="text of at most"):
        checkpoint.read(tampered(run, tmp_path, change))


# ------------------------------------------------------------ adversarial: every field typed and checked
import re  # noqa: E402

from netlab.checkpoint import COUNTERS  # noqa: E402


def _first_weight(arrays):
    return next(k for k in arrays if k.startswith("model.") and not k.endswith("num_batches_tracked"))


def _refused(run, tmp_path, change, field, words):
    path = tampered(run, tmp_path, change)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.read(path)
    assert f"'{field}'" in str(caught.value) or f": {field} " in str(caught.value), str(caught.value)
    assert words in str(caught.value), str(caught.value)


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("value", [np.int64(-1), np.float64(2.5), np.float64(3.0), np.array("3"),
                                   np.array([1, 2]), np.bool_(True)])
def test_a_counter_is_an_integer_at_least_zero(run, tmp_path, counter, value):
    """step, epoch, batch, ...: a negative, fractional, float-typed, text or array counter is refused by name."""
    def change(a):
        a[counter] = value
    _refused(run, tmp_path, change, counter, "must be an integer >= 0")


@pytest.mark.parametrize("bad,words", [
    (lambda w: w.astype(np.int32), "must be floating-point numbers, not int32"),
    (lambda w: w.astype(np.int64), "must be floating-point numbers, not int64"),
    (lambda w: w.astype(np.uint8), "must be floating-point numbers, not uint8"),
    (lambda w: w.astype(bool), "must be floating-point numbers, not bool"),
    (lambda w: np.full(w.shape, "0.1"), "must be floating-point numbers, not <U3"),
    (lambda w: np.where(np.arange(w.size).reshape(w.shape) == 0, np.nan, w), "holds NaN or infinite values"),
    (lambda w: np.full(w.shape, np.inf, w.dtype), "holds NaN or infinite values"),
    (lambda w: np.full(w.shape, -np.inf, w.dtype), "holds NaN or infinite values"),
], ids=["int32", "int64", "uint8", "bool", "text", "nan", "inf", "-inf"])
def test_a_weight_is_finite_floating_point(run, tmp_path, bad, words):
    """An integer weight would be cast silently and trained on; text and NaN are damage. Refused by name."""
    key = {}

    def change(a):
        key["k"] = _first_weight(a)
        a[key["k"]] = bad(a[key["k"]])
    path = tampered(run, tmp_path, change)
    with pytest.raises(CheckpointError, match=re.escape(key["k"])) as caught:
        checkpoint.read(path)
    assert words in str(caught.value)


@pytest.mark.parametrize("field,value,words", [
    ("data_mean", np.float64(np.nan), "must be a finite number"),
    ("data_mean", np.float64(np.inf), "must be a finite number"),
    ("data_mean", np.array("0.13"), "must be a finite number"),
    ("data_mean", np.zeros((2, 2)), "a 1-d array of finite numbers"),
    ("data_mean", np.array([0.1, np.nan]), "a 1-d array of finite numbers"),
    ("data_mean", np.zeros(5000), "a 1-d array of finite numbers"),
    ("data_mean", np.zeros(0), "a 1-d array of finite numbers"),
    ("data_std", np.float64(0.0), "must be a finite number > 0"),
    ("data_std", np.float64(-0.3), "must be a finite number > 0"),
    ("data_std", np.float64(np.nan), "must be a finite number > 0"),
    ("data_std", np.float64(-np.inf), "must be a finite number > 0"),
    ("data_std", np.array([0.2, 0.0, 0.3]), "each > 0"),
    ("run_loss", np.float64(np.nan), "must be a finite number >= 0"),
    ("run_loss", np.float64(-1.0), "must be a finite number >= 0"),
    ("run_correct", np.array("7"), "must be a finite number >= 0"),
    ("run_count", np.int64(-4), "must be an integer >= 0"),
    ("run_count", np.float64(4.0), "must be an integer >= 0"),
    ("best_val", np.float64(-2.0), "must be a finite number >= -1"),
    ("best_val", np.float64(np.inf), "must be a finite number >= -1"),
    ("train_time_s", np.float64(np.inf), "must be a finite number >= 0"),
    ("train_time_s", np.float64(-5.0), "must be a finite number >= 0"),
    ("elapsed_s", np.array("soon"), "must be a finite number >= 0"),
    ("elapsed_s", np.array([1.0, 2.0]), "must be a finite number >= 0"),
    ("config", np.float64(1.0), "must be text"),
    ("config", np.array(["a", "b"]), "must be text"),
    ("metrics.step", None, "must be integers >= 0"),
    ("metrics.split", None, "must be text among"),
    ("metrics.loss", None, "must be finite numbers"),
    ("metrics.accuracy", None, "must be finite numbers"),
    ("metrics.*", None, "columns of one dimension and equal length"),
])
def test_a_field_of_the_wrong_kind_is_refused_by_name(run, tmp_path, field, value, words):
    """Normalisation, running sums, times, config and the metrics log: each field's type, range and shape."""
    def change(a):
        if field == "metrics.step":
            a[field] = -np.ones_like(a[field])
        elif field == "metrics.split":
            a[field] = np.full(a[field].shape, "bogus")
        elif field in ("metrics.loss", "metrics.accuracy"):
            a[field] = np.full(a[field].shape, np.nan)
        elif field == "metrics.*":
            a["metrics.loss"] = a["metrics.loss"][:-1]
        else:
            a[field] = value
    _refused(run, tmp_path, change, field, words)


@pytest.mark.parametrize("which", ["seed", "counter"])
@pytest.mark.parametrize("value", [np.int64(-1), np.float64(1.5), np.array("1")])
def test_a_random_stream_s_state_is_an_integer(run, tmp_path, which, value):
    """rng.<name>.seed and .counter: integers >= 0, by name."""
    key = {}

    def change(a):
        key["k"] = next(k for k in a if k.startswith("rng.") and k.endswith("." + which))
        a[key["k"]] = value
    path = tampered(run, tmp_path, change)
    with pytest.raises(CheckpointError, match=re.escape(f"field '{key['k']}' must be an integer >= 0")):
        checkpoint.read(path)


@pytest.mark.parametrize("field", ["step", "config", "format", "data_std", "metrics.loss"])
def test_a_missing_field_is_named(run, tmp_path, field):
    """A checkpoint without one of its fields says which."""
    path = tampered(run, tmp_path, lambda a: a.pop(field))
    with pytest.raises(CheckpointError, match=re.escape(field)):
        checkpoint.read(path)


def test_an_object_array_is_refused_before_anything_is_unpickled(run, tmp_path):
    """A pickled (object) array is refused from its header: netlab stores numbers and text only."""
    path = tampered(run, tmp_path, lambda a: a.update(step=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(CheckpointError, match=r"step.npy has dtype object; netlab stores numbers and text only"):
        checkpoint.read(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_checkpoint_is_refused(run, tmp_path, keep):
    """A copy cut short (a full disk, an interrupted download) is not an archive, said in one error."""
    whole = (run / "checkpoints" / "last.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(whole[:int(len(whole) * keep)])
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))} is not a (readable )?netlab checkpoint"):
        checkpoint.read(path)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + bytes(64), b"PK\x03\x04" + bytes(30),
                                     b"\x93NUMPY\x01\x00" + bytes(100)], ids=["empty", "text", "png", "zip-head", "npy"])
def test_bytes_that_are_not_an_npz_are_refused(tmp_path, content):
    """Anything but an .npz archive is 'not an .npz archive'."""
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"is not a netlab checkpoint: it is not an .npz archive"):
        checkpoint.read(path)


def test_an_archive_member_that_is_not_an_array_is_refused(run, tmp_path):
    """An .npz with a stray member (a script, say) is refused by the member's name."""
    path = tmp_path / "extra.npz"
    path.write_bytes((run / "checkpoints" / "last.npz").read_bytes())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("run.py", "print('hi')")
    with pytest.raises(CheckpointError, match=r"it holds 'run.py'"):
        checkpoint.read(path)


@pytest.mark.parametrize("value,words", [(np.int64(2), "of format 2"), (np.array("1"), "of format 1"),
                                         (np.float64(1.0), "of format 1.0")])
def test_another_format_is_refused(run, tmp_path, value, words):
    """format: the integer 1 only."""
    path = tampered(run, tmp_path, lambda a: a.update(format=value))
    with pytest.raises(CheckpointError, match=rf"is a checkpoint {words}; this netlab reads format 1"):
        checkpoint.read(path)
