"""netlab's promises about bad input, hostile files and faults, one class at a time.

1. Nothing is silently wrong: a mistake is refused, not quietly "fixed" or ignored.
2. No run is lost or mixed up with another.
3. A diverging run never writes, or names as good, a checkpoint of unusable weights.
4. Small files cannot exhaust memory: headers are read first and sizes bounded.
5. Bad input gets one paragraph and exit status 2 (Ctrl-C: 130), never a traceback.
6. The advice given is right for the situation.
7. A file from outside is data, never instructions; outputs are written atomically.

Each case is a row of a table below; the closing note of the reliability issue lists them.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import checkpoint, data, models, training
from netlab.config import compose, validate
from netlab.data import idx
from netlab.data.io import load_digit
from netlab.errors import CheckpointError, ConfigError, DataError, DivergedError, Interrupted, NetlabError
from netlab.outputs import RunFolder, write_json
from conftest import FIXTURE, ROOT, SMALL, cli, small_config

KiB, MiB = 1 << 10, 1 << 20


def fit(out: Path, *overrides):
    out.mkdir(parents=True, exist_ok=True)
    return training.Trainer(small_config(*overrides), out).fit()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny finished run on the fixture: its folder holds last.npz, best.npz and results.json."""
    out = tmp_path_factory.mktemp("reliability") / "run"
    fit(out, "train.max_steps=6")
    return out


def fixture_copy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in FIXTURE.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def tampered(run: Path, tmp_path: Path, change) -> Path:
    """A copy of the run's last.npz with ``change(arrays)`` applied, written as plain np.savez."""
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    path = tmp_path / "tampered.npz"
    np.savez(path, **arrays)
    return path


def in_process(app, config_name: str, *overrides, capsys):
    """Run a command's task in this process; returns (exit status, the stderr it printed)."""
    cfg = compose(*overrides, config_name=config_name)
    with pytest.raises(SystemExit) as stop:
        app(cfg)
    return stop.value.code, capsys.readouterr().err


def assert_one_paragraph(err: str, status: int, expected: int = 2):
    assert status == expected, err
    lines = [line for line in err.splitlines() if line.startswith("netlab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err


def digit_image(dark_on_light=False, size=(120, 100)) -> np.ndarray:
    """A '7' as a float image in [0, 1] (light stroke on black unless dark_on_light)."""
    a = np.zeros(size[::-1])
    h, w = a.shape
    a[int(0.2 * h):int(0.27 * h), int(0.25 * w):int(0.75 * w)] = 1.0
    for i in range(int(0.27 * h), int(0.8 * h)):  # the diagonal
        x = int(0.75 * w - (i - 0.27 * h) * 0.35)
        a[i, x - 4:x + 4] = 1.0
    return 1.0 - a if dark_on_light else a


# ======================================================================== 1. silently wrong
def test_16_bit_grayscale_reads_like_8_bit(tmp_path):
    a = digit_image()
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


MODEL_FILE_MISTAKES = [
    ("typo kernal", [{"conv": {"out": 4, "kernal": 5}}, "flatten", {"linear": 10}], "unknown argument 'kernal'"),
    ("typo padd", [{"conv": {"out": 4, "padd": 1}}, "flatten", {"linear": 10}], "unknown argument 'padd'"),
    ("typo strid", [{"maxpool": {"kernel": 2, "strid": 2}}, "flatten", {"linear": 10}], "unknown argument 'strid'"),
    ("typo bais", ["flatten", {"linear": {"out": 10, "bais": False}}], "unknown argument 'bais'"),
    ("typo p", ["flatten", {"dropout": {"prob": 0.5}}, {"linear": 10}], "unknown argument 'prob'"),
    ("args to relu", [{"relu": {"inplace": True}}, "flatten", {"linear": 10}], "relu takes no arguments"),
    ("fractional linear", ["flatten", {"linear": 10.5}], "'out' must be an integer"),
    ("fractional conv", [{"conv": {"out": 2.5}}, "flatten", {"linear": 10}], "'out' must be an integer"),
    ("fractional kernel", [{"conv": {"out": 2, "kernel": 3.0}}, "flatten", {"linear": 10}], "'kernel' must be an integer"),
    ("text size", [{"conv": {"out": "16"}}, "flatten", {"linear": 10}], "'out' must be an integer"),
    ("bool size", ["flatten", {"linear": True}], "'out' must be an integer"),
]


@pytest.mark.parametrize("case,layers,message", MODEL_FILE_MISTAKES, ids=[c[0] for c in MODEL_FILE_MISTAKES])
def test_model_file_mistakes_are_refused(case, layers, message):
    cfg = small_config().model
    cfg.layers = layers
    with pytest.raises(ConfigError, match=message):
        models.build(cfg)


@pytest.mark.parametrize("overrides,message", [
    (["model.num_classes=7", "model.layers=[flatten,{linear:7}]"], "model.num_classes must be 10"),
    (["model.num_classes=12", "model.layers=[flatten,{linear:12}]"], "model.num_classes must be 10"),
])
def test_class_count_must_fit_the_dataset(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small_config(*overrides)


@pytest.mark.parametrize("override,message", [
    ("+train.max_step=2", "unknown setting train.max_step; did you mean train.max_steps?"),
    ("+train.epoch=1", "did you mean train.epochs?"),
    ("+data.augment.rotat_p=1", "did you mean data.augment.rotate_p?"),
    ("+optimizer.betas1=0.5", "unknown setting optimizer.betas1"),
    ("+optimizer.momentum=0.9", "unknown setting optimizer.momentum"),  # adam has none
    ("+seeed=3", "unknown setting seeed; did you mean seed?"),
    ("+model.dropuot=0.5", "did you mean model.dropout?"),
])
def test_typos_added_with_plus_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(override))


@pytest.mark.parametrize("change,named", [
    ("seed=1", "seed: 0 -> 1"),
    ("train.batch_size=16", "train.batch_size: 32 -> 16"),
    ("data.limit=300", "data.limit: None -> 300"),
    ("data.normalize=false", "data.normalize: True -> False"),
    ("optimizer.lr=0.01", "optimizer.lr: 0.003 -> 0.01"),
    ("train.max_steps=12", "train.max_steps: 6 -> 12"),
])
def test_resume_with_changed_settings_is_refused(run, tmp_path, change, named):
    trainer = training.Trainer(small_config("train.max_steps=6", change), tmp_path / "again")
    with pytest.raises(CheckpointError, match="settings differ") as err:
        trainer.load(run)
    assert named in str(err.value)


@pytest.mark.parametrize("key,value,message", [
    ("model.0.weight", np.nan, "model.0.weight holds NaN"),
    ("model.3.bias", np.inf, "model.3.bias holds NaN or infinite"),
    ("data_mean", np.nan, "field 'data_mean' must be a finite number"),
    ("data_std", 0.0, "field 'data_std' must be a finite number > 0"),
    ("data_std", np.inf, "field 'data_std' must be a finite number > 0"),
])
def test_unusable_weights_or_normalisation_are_refused_not_predicted_with(run, tmp_path, key, value, message):
    def change(a):
        a[key] = np.full_like(a[key], value) if a[key].shape else np.asarray(value)

    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_model(tampered(run, tmp_path, change), data.pipeline.backend.namespace("numpy"))


def test_results_never_hold_infinity(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "results.json", {"test_loss": float("inf")})
    assert not (tmp_path / "results.json").exists()


# ================================================================ 2. lost or mixed-up runs
def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    with RunFolder(tmp_path / "run"):
        with pytest.raises(ConfigError, match="another netlab run is writing into"):
            fit(tmp_path / "run", "train.max_steps=2")
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("held", ["results.json", "checkpoints/last.npz", "checkpoints/best.npz"])
def test_a_folder_holding_a_run_is_never_written_over(run, tmp_path, held):
    target = tmp_path / "run"
    (target / held).parent.mkdir(parents=True, exist_ok=True)
    (target / held).write_bytes((run / held).read_bytes())
    before = (target / held).read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(target, "train.max_steps=2")
    assert (target / held).read_bytes() == before


def interrupt_at(trainer, step):
    real = trainer.opt.step

    def stepped():
        if trainer.at.step == step:
            raise KeyboardInterrupt
        real()

    trainer.opt.step = stepped
    return trainer


def test_an_interrupted_run_continues_in_its_own_folder(tmp_path):
    over = ("train.max_steps=6", "train.checkpoint_every=1", "train.eval_every=100")
    with pytest.raises(Interrupted, match=f"interrupted at step 3 of 6; the last checkpoint is from step 3: "
                                          f"continue with train.resume={tmp_path / 'run'}"):
        interrupt_at(training.Trainer(small_config(*over), tmp_path / "run"), 3).fit()
    trainer = training.Trainer(small_config(*over), tmp_path / "run")
    trainer.load(tmp_path / "run")
    assert trainer.fit()["steps"] == 6


def test_default_output_folders_tell_apart_runs_of_the_same_second():
    from omegaconf import OmegaConf

    for name in ("config", "evaluate", "bench"):
        hydra_cfg = OmegaConf.load(ROOT / "conf" / f"{name}.yaml").hydra
        assert OmegaConf.to_container(hydra_cfg)["run"]["dir"].endswith("%H-%M-%S.%f}"), name
    assert OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "config.yaml").hydra)["sweep"]["dir"].endswith(".%f}")


def test_three_runs_started_at_once_keep_three_results(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "netlab.train", *SMALL, "train.max_steps=2", "train.eval_every=2"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    assert len(list((tmp_path / "outputs").rglob("results.json"))) == 3


def write_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray):
    image_name, label_name = data.files.SPLITS[split]
    idx.write(folder / f"{image_name}.gz", images)
    idx.write(folder / f"{label_name}.gz", labels)


DATA_PROBLEMS = [
    ("test images of another size", lambda f: write_split(f, "test", np.zeros((20, 32, 32), np.uint8),
                                                           np.zeros(20, np.uint8)), "one size"),
    ("empty test set", lambda f: write_split(f, "test", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)),
     "the test split is empty"),
    ("test labels fewer than images", lambda f: write_split(f, "test", np.zeros((20, 28, 28), np.uint8),
                                                             np.zeros(19, np.uint8)), "20 images but 19 labels"),
    ("test label out of range", lambda f: write_split(f, "test", np.zeros((20, 28, 28), np.uint8),
                                                       np.full(20, 11, np.uint8)), "label 11 outside 0..9"),
    ("one training image", lambda f: write_split(f, "train", np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8)),
     "val_fraction"),
    ("labels stored as 3-d", lambda f: idx.write(f / "t10k-labels-idx1-ubyte.gz", np.zeros((20, 2, 2), np.uint8)),
     "has 3 dimensions, expected 1"),
]


@pytest.mark.parametrize("case,spoil,message", DATA_PROBLEMS, ids=[c[0] for c in DATA_PROBLEMS])
def test_data_problems_are_found_before_the_first_step(tmp_path, case, spoil, message):
    folder = fixture_copy(tmp_path / "data")
    spoil(folder)
    with pytest.raises(DataError, match=message):
        fit(tmp_path / "run", f"data.root={folder}", "train.max_steps=2")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_model_input_of_another_size_is_found_before_the_first_step(tmp_path):
    with pytest.raises(DataError, match=r"images are \(1, 28, 28\) but the model takes \(1, 32, 32\)"):
        fit(tmp_path / "run", "model.input_shape=[1,32,32]", "train.max_steps=2")


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


def test_extending_a_run_is_allowed_only_where_the_schedule_does_not_depend_on_its_length(tmp_path):
    fit(tmp_path / "const", "train.max_steps=3", "optimizer.schedule.name=constant")
    longer = training.Trainer(small_config("train.max_steps=6", "optimizer.schedule.name=constant"), tmp_path / "c2")
    longer.load(tmp_path / "const")
    assert longer.fit()["steps"] == 6
    fit(tmp_path / "onecycle", "train.max_steps=3")
    with pytest.raises(CheckpointError, match="train.max_steps: 3 -> 6"):
        training.Trainer(small_config("train.max_steps=6"), tmp_path / "o2").load(tmp_path / "onecycle")
