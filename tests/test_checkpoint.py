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
