"""Where runs write, and how (netlab.outputs): JSON without infinities, one run per folder and
never over a finished run, output folders that tell apart runs started together, and writes
that leave the old file whole when the disk fails."""

from __future__ import annotations

import errno
import os
import re
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


# ------------------------------------------------------------ adversarial: the one rule for output paths
from netlab.outputs import MAX_TEXT_BYTES, check_output, read_text  # noqa: E402

PROTECTED = ["checkpoints/last.npz", "checkpoints/best.npz", "checkpoints/other.npz", "results.json", "metrics.csv",
             "curves.png", "train.log", ".netlab.lock", "failure.json", ".hydra/config.yaml",
             ".hydra/overrides.yaml", ".hydra/hydra.yaml"]
# each place that takes an output path, as the command calls the rule: export's out= (the file
# itself) and evaluate's out= (the files it writes into that folder)
PLACES = ["export", "evaluate"]


def _fake_run(root: Path) -> Path:
    """A folder that holds a run: its checkpoints, results and Hydra record (contents do not matter)."""
    (root / "checkpoints").mkdir(parents=True)
    (root / ".hydra").mkdir()
    for name in ("checkpoints/last.npz", "checkpoints/best.npz", "results.json", "metrics.csv", "curves.png",
                 "train.log", ".hydra/config.yaml"):
        (root / name).write_bytes(b"kept")
    return root


def _check(place, target: Path, source: Path):
    if place == "export":
        return check_output(target, "out", inputs=[source])
    return check_output(target.parent / "evaluation_best_test.json", "out", inputs=[source]) if \
        target.parent.name in ("checkpoints", ".hydra") else check_output(target, "out", inputs=[source])


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", PROTECTED)
def test_an_output_never_writes_over_a_run_s_own_file(tmp_path, name, place):
    """export out= / evaluate out= never name a checkpoint, results, metrics, log or Hydra record of a run."""
    run = _fake_run(tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"out=.* is one of the run's own files in .*run; writing over it"):
        _check(place, run / name, tmp_path / "elsewhere.npz")  # made from another file
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", [n for n in PROTECTED if "/" not in n] + ["checkpoints", ".hydra", "", ".", "..",
                                                                           "sub/metrics.csv", "a\\b"])
def test_a_logger_file_is_a_plain_name_that_is_not_the_run_s_own(name):
    """logger.csv.file and logger.tensorboard.dir: a plain name in the run folder, none of its own files."""
    from netlab.config import CsvConfig, TensorBoardConfig

    if name == "metrics.csv":  # the csv logger's own file, which summarize reads
        assert CsvConfig(file=name).file == name
        return
    for cls, key in ((CsvConfig, "logger.csv.file"), (TensorBoardConfig, "logger.tensorboard.dir")):
        with pytest.raises(ConfigError, match=rf"invalid setting: {re.escape(key)} must be a plain name"):
            cls(**{key.rsplit(".", 1)[1]: name})


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_an_output_is_never_a_folder_or_a_special_file(tmp_path, kind):
    """out= naming a folder, a FIFO or /dev/null is refused before anything is written."""
    target = tmp_path / "out"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target = Path("/dev/null")
    words = "a folder" if kind == "folder" else "not a regular file"
    with pytest.raises(ConfigError, match=rf"out={re.escape(str(target))} is {words}; give a file name"):
        check_output(target, "out", inputs=[tmp_path / "model.npz"])


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "dotted"])
def test_an_output_is_never_the_file_it_is_made_from(tmp_path, monkeypatch, how):
    """out= naming the checkpoint it is exported from (however spelt) is refused."""
    source = tmp_path / "src" / "model.npz"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    target = {"same": source, "relative": Path("src/model.npz"), "dotted": tmp_path / "src" / ".." / "src" / "model.npz",
              "symlink": tmp_path / "alias.npz"}[how]
    if how == "symlink":
        target.symlink_to(source)
    with pytest.raises(ConfigError, match="is the file it is made from; give another file name"):
        check_output(target, "out", inputs=[source])
    assert source.read_bytes() == b"weights"


def test_a_symlink_to_a_run_s_results_is_refused(tmp_path):
    """An innocent-looking name that links to a run's results.json is that file."""
    run = _fake_run(tmp_path / "run")
    (tmp_path / "export.json").symlink_to(run / "results.json")
    with pytest.raises(ConfigError, match="is one of the run's own files"):
        check_output(tmp_path / "export.json", "out")


@pytest.mark.parametrize("name", ["model.onnx", "best.safetensors", "results.json.bak", "notes/metrics.csv"])
def test_a_new_file_beside_a_run_s_own_is_allowed(tmp_path, name):
    """The rule refuses the run's own files only: a new name in the run folder is fine."""
    run = _fake_run(tmp_path / "run")
    assert check_output(run / name, "out") == run / name


@pytest.mark.parametrize("name", ["results.json", "metrics.csv", "train.log"])
def test_a_run_s_file_names_outside_a_run_folder_are_allowed(tmp_path, name):
    """results.json in a folder that holds no run is just a file name."""
    assert check_output(tmp_path / name, "out") == tmp_path / name


# ------------------------------------------------------------ adversarial: small files read back bounded
READ_BACK = ["results.json", "metrics.csv", "failure.json", "multirun.yaml", "overrides.yaml"]


@pytest.mark.parametrize("name", READ_BACK)
@pytest.mark.parametrize("kind", ["fifo", "folder", "dev_zero", "oversized"])
def test_a_file_read_back_is_a_small_regular_file(tmp_path, name, kind):
    """A FIFO, a folder, a link to /dev/zero or an oversized file is refused, never waited on or read whole."""
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)  # with no writer: a blocking open would wait for ever
    elif kind == "folder":
        path.mkdir()
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")  # endless
    else:
        path.write_bytes(b"{" + b" " * 2048 + b"}")
    if kind == "folder":
        with pytest.raises((IsADirectoryError, ValueError), match="Is a directory|is not a regular file"):
            read_text(path)
    elif kind == "oversized":
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is larger than 1,024 bytes"):
            read_text(path, limit=1024)
    else:
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a regular file"):
            read_text(path)


def test_a_file_at_the_limit_is_read(tmp_path):
    """The bound is inclusive, and the default is the documented 16 MiB."""
    (tmp_path / "results.json").write_text("x" * 1024)
    assert read_text(tmp_path / "results.json", limit=1024) == "x" * 1024
    assert MAX_TEXT_BYTES == 16 << 20


@pytest.mark.parametrize("app,over", [("evaluate", "out={run}/checkpoints"), ("evaluate", "out={run}/.hydra"),
                                      ("export", "out={run}/results.json"), ("export", "out={run}/checkpoints/last.npz"),
                                      ("export", "out={run}/checkpoints/best.npz")])
def test_the_commands_apply_the_rule_before_reading(run, app, over, capsys):
    """evaluate and export, run in this process, refuse a run's own file with status 2 and write nothing."""
    from netlab.cli import evaluate as evaluate_app, export as export_app
    from conftest import in_process

    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    fn = {"evaluate": evaluate_app.evaluate, "export": export_app.export}[app]
    status, err = in_process(fn, app, f"checkpoint={run}", over.format(run=run), capsys=capsys)
    assert status == 2
    assert re.search(r"netlab: error: out=.* is (one of the run's own files|the file it is made from)", err), err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
