"""The checkpoint format: round trip, atomic writes, and refusals of what is not a checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest

from netlab import checkpoint
from netlab.errors import CheckpointError
from netlab.metrics import COLUMNS


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
