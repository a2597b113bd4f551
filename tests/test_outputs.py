"""Where runs write, and how (netlab.outputs): JSON without infinities, one run per folder and
never over a finished run, output folders that tell apart runs started together, and writes
that leave the old file whole when the disk fails."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from netlab import training
from netlab.errors import ConfigError, Interrupted
from netlab.outputs import RunFolder, write_json
from conftest import GOOD, ROOT, SMALL, interrupt_at, make_sweep, small_config, train


def test_results_never_hold_infinity(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "results.json", {"test_loss": float("inf")})
    assert not (tmp_path / "results.json").exists()


# ------------------------------------------------------------------ no run lost or mixed up with another
def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    with RunFolder(tmp_path / "run"):
        with pytest.raises(ConfigError, match="another netlab run is writing into"):
            train(tmp_path / "run", "train.max_steps=2")
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("held", ["results.json", "checkpoints/last.npz", "checkpoints/best.npz"])
def test_a_folder_holding_a_run_is_never_written_over(run, tmp_path, held):
    target = tmp_path / "run"
    (target / held).parent.mkdir(parents=True, exist_ok=True)
    (target / held).write_bytes((run / held).read_bytes())
    before = (target / held).read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(target, "train.max_steps=2")
    assert (target / held).read_bytes() == before


def test_default_output_folders_tell_apart_runs_of_the_same_second():
    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.load(ROOT / "conf" / "config.yaml").hydra  # evaluate writes into the run folder, predict nowhere
    assert OmegaConf.to_container(hydra_cfg)["run"]["dir"].endswith("%H-%M-%S.%f}")
    from netlab.cli import bench, lr_find  # the bench and the range test name their own folders, to the microsecond

    for module in (bench, lr_find):
        assert 'strftime("%Y-%m-%d/%H-%M-%S.%f")' in Path(module.__file__).read_text(), module
    assert OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "config.yaml").hydra)["sweep"]["dir"].endswith(".%f}")


def test_three_runs_started_at_once_keep_three_results(tmp_path, spawn):
    procs = [spawn("netlab.train", *SMALL, "train.max_steps=2", "train.eval_every=2", cwd=tmp_path,
                   stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    assert len(list((tmp_path / "outputs").rglob("results.json"))) == 3


# ------------------------------------------------------------------- a disk that fails mid-write
def test_a_full_disk_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    over = ("train.max_steps=6", "train.checkpoint_every=1", "train.eval_every=100")
    with pytest.raises(Interrupted):
        interrupt_at(training.Trainer(small_config(*over), tmp_path / "run"), 3).fit()
    before = (tmp_path / "run" / "checkpoints" / "last.npz").read_bytes()
    trainer = training.Trainer(small_config(*over), tmp_path / "run")
    trainer.load(tmp_path / "run")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        trainer.fit()
    assert (tmp_path / "run" / "checkpoints" / "last.npz").read_bytes() == before
    assert not list((tmp_path / "run").rglob("*.tmp"))


@pytest.mark.parametrize("write", ["json", "png", "summary"])
def test_an_output_rewritten_when_the_disk_fails_keeps_its_old_version(tmp_path, monkeypatch, write):
    from netlab import plots
    from netlab.cli import summarize

    def make():
        if write == "json":
            write_json(tmp_path / "results.json", {"a": 1})
        elif write == "png":
            plots.curves([{"step": 1, "split": "val", "loss": 1.0, "accuracy": 0.5}], tmp_path / "curves.png")
        else:
            make_sweep(tmp_path / "sweep", {"0_a1": GOOD}) if not (tmp_path / "sweep").exists() else None
            summarize.summarize(tmp_path / "sweep")

    make()
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        make()
    assert {p: p.read_bytes() for p in sorted(p for p in tmp_path.rglob("*") if p.is_file())} == before
