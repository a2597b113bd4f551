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

from netlab import checkpoint, console, data, models, saved, training
import netlab.data.idx
import netlab.data.images
from netlab.config import compose, validate
from netlab.data import idx
from netlab.data.images import load_digit
from netlab.errors import CheckpointError, ConfigError, DataError, DivergedError, Interrupted
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
        saved.load(tampered(run, tmp_path, change))


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

    for name in ("config", "bench"):  # evaluate writes into the run folder, predict nowhere
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
    image_name, label_name = data.datasets.SPLITS[split]
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


# ================================================================================ 3. divergence
def assert_named_checkpoint_works(message: str, trainer) -> None:
    if "No checkpoint with usable weights" in message:
        return
    named = message.split("The last good checkpoint is ")[1].split(" (step")[0]
    ck = checkpoint.read(named)
    model = models.build(trainer.cfg.model)
    model.load_state_dict(ck.model)
    ev = training.metrics.evaluate(model.to(trainer.xp), trainer.splits.val_x, trainer.splits.val_y, 60,
                                   trainer.mean, trainer.std)
    assert np.isfinite(ev.loss), named


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1e8), ("momentum", 1e6), ("adam", 1e4), ("rmsprop", 1e5),
                                          ("adagrad", 1e9)])
def test_huge_learning_rates_never_leave_a_bad_checkpoint_named_or_written(tmp_path, optimizer, lr):
    out = tmp_path / "run"
    out.mkdir()
    trainer = training.Trainer(small_config(f"optimizer={optimizer}", f"optimizer.lr={lr}", "train.max_steps=30",
                                            "train.checkpoint_every=1", "train.eval_every=5"), out)
    try:
        results = trainer.fit()
    except DivergedError as exc:
        assert_named_checkpoint_works(str(exc), trainer)
    else:  # it survived: then everything it reports is a real number
        assert all(np.isfinite(v) for k, v in results.items() if k.endswith(("_loss", "_accuracy")))
    for path in (out / "checkpoints").glob("*.npz"):
        checkpoint.read(path)  # refuses non-finite weights or optimizer state


@pytest.mark.parametrize("where", ["weight", "optimizer"])
def test_non_finite_state_is_never_saved(tmp_path, where):
    out = tmp_path / "run"
    out.mkdir()
    trainer = training.Trainer(small_config("train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=100",
                                            "optimizer=momentum"), out)
    real = trainer.opt.step

    def poison():
        real()
        if trainer.at.step == 3:  # after step 4's update, before its checkpoint
            if where == "weight":
                trainer.model.layers[0].params["weight"] = trainer.model.layers[0].params["weight"] * float("nan")
            else:
                bufs = trainer.opt.state["0.weight"]
                bufs["momentum_buffer"] = bufs["momentum_buffer"] * float("inf")

    trainer.opt.step = poison
    with pytest.raises(DivergedError, match="holds non-finite values") as err:
        trainer.fit()
    assert "The last good checkpoint is" in str(err.value)
    assert checkpoint.read(out).counters["step"] == 2


# ====================================================== 4. small files that exhaust memory
HUGE_MODELS = [
    ("conv of a million channels", [{"conv": {"out": 1000000, "kernel": 3}}, "flatten", {"linear": 10}]),
    ("linear of a billion units", ["flatten", {"linear": 1000000000}, {"linear": 10}]),
    ("kernel of a million", [{"conv": {"out": 2, "kernel": 1000000}}, "flatten", {"linear": 10}]),
    ("wide stack", ["flatten", {"linear": 20000}, {"linear": 20000}, {"linear": 10}]),
]


@pytest.mark.parametrize("case,layers", HUGE_MODELS, ids=[c[0] for c in HUGE_MODELS])
def test_a_checkpoint_asking_for_a_huge_model_is_refused_before_allocating(run, tmp_path, case, layers):
    import yaml

    def change(a):
        cfg = yaml.safe_load(str(a["config"]))
        cfg["model"]["layers"] = layers
        a["config"] = np.asarray(yaml.safe_dump(cfg))

    with pytest.raises(CheckpointError, match="refuses more than|does not fit"):
        saved.load(tampered(run, tmp_path, change))


@pytest.mark.parametrize("shape", [[1, 100000, 100000], [1, 28, 28, 28], [0, 28, 28], [-1, 28, 28]])
def test_absurd_input_shapes_are_refused(shape):
    cfg = small_config().model
    cfg.input_shape = shape
    with pytest.raises(ConfigError, match="input_shape"):
        models.build(cfg)


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


@pytest.mark.parametrize("case,config,message", [
    ("billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "anchors, aliases or tags"),
    ("python object tag", "model: !!python/object/apply:os.system ['echo hi']\n", "anchors, aliases or tags"),
    ("not a mapping", "- 1\n- 2\n", "not a mapping"),
    ("not YAML", "model: [unclosed\n", "not valid YAML"),
    ("unknown key", "seed: 0\nsurprise: 1\n", "unknown setting surprise"),
    ("invalid value", "optimizer: {name: sgd, lr: -1}\n", "embedded config is invalid"),
])
def test_hostile_embedded_configs_are_refused(run, tmp_path, case, config, message):
    def change(a):
        a["config"] = np.asarray(config)

    with pytest.raises(CheckpointError, match=message):
        saved.load(tampered(run, tmp_path, change))


def test_an_overlong_embedded_config_is_refused(run, tmp_path):
    def change(a):
        a["config"] = np.asarray("#" * (checkpoint.MAX_CONFIG_CHARS + 1))

    with pytest.raises(CheckpointError, match="text of at most"):
        checkpoint.read(tampered(run, tmp_path, change))


# ======================================== 5. one paragraph and exit status 2, never a traceback
from netlab.cli import bench as bench_app, evaluate as evaluate_app, predict as predict_app  # noqa: E402


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("digit") / "seven.png"
    Image.fromarray((digit_image(dark_on_light=True) * 255).astype(np.uint8)).save(path)
    return path


APP_ARGUMENTS = [
    # (app, config, overrides, message); {run} and {digit} are filled in
    ("predict", ["top=0"], "top must be an integer in [1, 100000]"),
    ("predict", ["top=-1"], "top must be an integer in [1, 100000]"),
    ("predict", ["checkpoint=null"], "checkpoint must be the trained model: checkpoint=PATH"),
    ("predict", ["image=null"], "image must be given: checkpoint=PATH image=FILE.png"),
    ("predict", ["image={tmp}/missing.png"], "missing.png not found"),
    ("predict", ["image={tmp}"], "4 of 4 images could not be read"),  # a folder of unreadable ones
    ("predict", ["image={tmp}/empty.png"], "cannot read it as an image"),
    ("predict", ["image={tmp}/truncated.png"], "cannot read it as an image"),
    ("predict", ["image={tmp}/text.png"], "cannot read it as an image"),
    ("predict", ["image={tmp}/blank.png"], "no digit found"),
    ("predict", ["checkpoint={digit}"], "not an .npz archive"),
    ("predict", ["checkpoint={tmp}"], "checkpoint {tmp}/checkpoints/best.npz not found"),
    ("predict", ["checkpoint={tmp}/missing.npz"], "missing.npz not found"),
    ("evaluate", ["batch_size=0"], "batch_size must be an integer in [1, 65536]"),
    ("evaluate", ["batch_size=-5"], "batch_size must be an integer in [1, 65536]"),
    ("evaluate", ["split=train"], "split must be one of test, val"),
    ("evaluate", ["checkpoint=null"], "checkpoint must be the trained model: checkpoint=PATH"),
    ("evaluate", ["checkpoint={digit}"], "not an .npz archive"),
    ("evaluate", ["data.root={tmp}/nowhere", "data.download=false"], "not found in {tmp}/nowhere"),
    ("bench", ["batch_sizes=[0]"], "batch_sizes must be an integer in [1, 65536] (each)"),
    ("bench", ["batch_sizes=[-1,64]"], "batch_sizes must be an integer in [1, 65536] (each)"),
    ("bench", ["batch_sizes=[]"], "batch_sizes must be a list"),
    ("bench", ["repeats=0"], "repeats must be an integer >= 1"),
    ("bench", ["steps=0"], "steps must be an integer >= 1"),
    ("bench", ["warmup=-1"], "warmup must be an integer >= 0"),
    ("bench", ["mode=fast"], "mode must be one of step, e2e"),
    ("bench", ["threads=0"], "threads must be an integer in [1, 1024]"),
    ("bench", ["epochs=0"], "epochs must be an integer >= 1"),
    ("bench", ["runs=0"], "runs must be an integer >= 1"),
    ("bench", ["mode=e2e", "recipe=nope"], "recipe='nope' is not a training preset; choose one of: best, fast99"),
    ("bench", ["mode=e2e", "recipe=../model/seed_cnn"], "is not a training preset"),
    ("bench", ["mode=e2e", "recipe=study_lr"], "recipe=study_lr is a sweep of several runs"),
    ("bench", ["mode=e2e", "train_overrides=['train.max_step=2']"], "Could not override 'train.max_step'"),
    ("bench", ["mode=e2e", "train_overrides=['train.max_steps=abc']"], "cannot compose the config"),
    ("bench", ["mode=e2e", "train_overrides=['model=nope']"], "cannot compose the config"),
    ("bench", ["mode=e2e", "train_overrides=[1,2]"], "cannot compose the config"),
    ("bench", ["mode=e2e", "train_overrides=['backend.threads=1']"], "sets what the bench sets itself"),
    ("bench", ["mode=e2e", "train_overrides=['train.patience=3']"], "sets what the bench sets itself"),
    ("bench", ["mode=e2e", "train_overrides=['+experiment=fast99']"], "sets what the bench sets itself"),
    ("bench", ["backend.conv=winograd"], "backend.conv must be one of"),
    ("bench", ["backend.conv=fft", "model=fast_cnn", "smoke=true"], "(backend.conv=fft)"),
    ("evaluate", ["backend.conv=fft", "model=fast_cnn"], "(backend.conv=fft)"),
]
APPS = {"predict": predict_app.predict, "evaluate": evaluate_app.evaluate, "bench": bench_app.bench}


@pytest.mark.parametrize("app,overrides,message", APP_ARGUMENTS,
                         ids=[f"{a}-{' '.join(o)}" for a, o, _ in APP_ARGUMENTS])
def test_bad_command_arguments_get_one_paragraph(run, digit_png, tmp_path, capsys, app, overrides, message):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.png").write_bytes(digit_png.read_bytes()[:200])
    (tmp_path / "text.png").write_text("this is not a picture")
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    fill = {"tmp": tmp_path, "digit": digit_png, "run": run}
    base = [f"checkpoint={run}", f"image={digit_png}"] if app == "predict" else \
        [f"checkpoint={run}", f"data.root={FIXTURE}"] if app == "evaluate" else []
    status, err = in_process(APPS[app], app, *base, *(o.format(**fill) for o in overrides), capsys=capsys)
    assert_one_paragraph(err, status)
    assert message.format(**fill) in err


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


@pytest.mark.parametrize("case,damage,message", [
    ("optimizer state of the wrong shape", lambda a: a.__setitem__("optim.state.0.weight.exp_avg", np.zeros((2, 2))),
     "optimizer state 0.weight.exp_avg has shape (2, 2)"),
    ("optimizer state for a parameter the model lacks",
     lambda a: a.__setitem__("optim.state.9.weight.exp_avg", np.zeros(3, np.float32)), "unknown parameter '9.weight'"),
    ("weights of the wrong shape", lambda a: a.__setitem__("model.0.weight", np.zeros((3, 3), np.float32)),
     "shape mismatch for '0.weight'"),
    ("a weight missing", lambda a: a.pop("model.0.bias"), "missing ['0.bias']"),
])
def test_a_checkpoint_that_does_not_fit_cannot_be_resumed(run, tmp_path, case, damage, message):
    path = tampered(run, tmp_path, damage)
    trainer = training.Trainer(small_config("train.max_steps=6"), tmp_path / "again")
    with pytest.raises(CheckpointError, match="saved from a different model") as err:
        trainer.load(path)
    assert message in str(err.value)


def make_sweep(root: Path, jobs: dict) -> Path:
    for name, results in jobs.items():
        job = root / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={name[-1]}\n")
        if results is not None:
            (job / "results.json").write_text(results)
    return root


GOOD = json.dumps({"val_accuracy": 0.9, "test_accuracy": 0.91, "best_val_accuracy": 0.92, "train_time_s": 3.0,
                   "images_per_s": 100.0, "epochs": 1, "steps": 10})


@pytest.mark.parametrize("case,jobs,expect", [
    ("a single run", {"0_a1": GOOD}, "90.00%"),
    ("a truncated results.json", {"0_a1": GOOD, "1_a2": GOOD[:30]}, "unreadable results.json (JSONDecodeError)"),
    ("a null field", {"0_a1": GOOD.replace("0.91", "null")}, "| - |"),
    ("a results.json that is a list", {"0_a1": GOOD, "1_a2": "[1, 2]"}, "unreadable results.json (ValueError)"),
    ("a job without results", {"0_a1": GOOD, "1_a2": None}, "no results.json"),
    ("NaN written as text", {"0_a1": GOOD.replace("0.91", "NaN")}, "| - |"),
])
def test_summarize_reads_partial_sweeps(tmp_path, case, jobs, expect):
    from netlab.cli import summarize

    root = make_sweep(tmp_path / "sweep", jobs)
    rows, common, unfinished = summarize.summarize(root)
    assert expect in summarize.markdown(rows, common, unfinished)
    assert (root / "summary.md").exists() and (root / "comparison.png").exists()


@pytest.mark.parametrize("case,setup,message", [
    ("an empty folder", lambda root: root.mkdir(), "no finished runs"),
    ("only failed jobs", lambda root: make_sweep(root, {"0_a1": None}), "1 job folders have no readable"),
    ("a file, not a folder", lambda root: root.write_text("x"), "is not a directory"),
])
def test_summarize_refuses_what_it_cannot_summarise(tmp_path, capsys, case, setup, message):
    from netlab.cli import summarize

    root = tmp_path / "sweep"
    setup(root)
    with pytest.raises(SystemExit) as stop:
        summarize.main([str(root)])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "No space left on device"),
                                        (errno.EROFS, "Read-only file system"),
                                        (errno.EACCES, "Permission denied")])
def test_a_disk_that_refuses_writes_gets_one_paragraph(tmp_path, capsys, monkeypatch, code, words):
    from netlab.cli.exits import user_errors

    def refuse(fd):
        raise OSError(code, os.strerror(code), str(tmp_path / "x"))

    monkeypatch.setattr(os, "fsync", refuse)
    task = user_errors(lambda cfg: write_json(tmp_path / "results.json", {"a": 1}))
    with pytest.raises(SystemExit) as stop:
        task(compose())
    err = capsys.readouterr().err
    assert_one_paragraph(err, stop.value.code)
    assert words in err and "intact" in err


def test_ctrl_c_says_where_the_run_stopped_and_exits_130(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "netlab.train", *SMALL, "train.epochs=100000",
                             "train.checkpoint_every=2", "train.eval_every=100000", f"hydra.run.dir={out}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default_in_child)  # a user's terminal, even under CI run with &
    try:
        deadline = time.time() + 120
        while not (out / "checkpoints" / "last.npz").exists() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:  # never leave a 100000-epoch run behind, whatever happened
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert_one_paragraph(err, proc.returncode, 130)
    assert f"continue with train.resume={out}" in err
    checkpoint.read(out)  # what it saved is intact


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test: a shell without job control starts background
    jobs (CI launched with &) with SIGINT ignored, and netlab rightly leaves that alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_default_in_child():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_ctrl_c_waits_for_a_safe_point_and_a_second_one_does_not(default_sigint):
    """The first SIGINT is held until the loop's next check; a second interrupts at once; the
    handler is Python's default again afterwards."""
    with console.DeferredInterrupt() as interrupt:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs at the next bytecode boundary
        except KeyboardInterrupt:
            pytest.fail("the first Ctrl-C interrupted at once instead of waiting for a check")
        assert interrupt.pending
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_during_a_checkpoint_write_lets_the_write_finish(tmp_path, monkeypatch, default_sigint):
    """A Ctrl-C that lands while a checkpoint is being assembled and written (it once hit
    OmegaConf there and crashed with exit 1) ends the run after the write, whole, with
    Interrupted (exit 130) naming that checkpoint's step."""
    real_write, calls = checkpoint.write, []

    def write_with_ctrl_c(path, state):
        calls.append(path)
        if len(calls) == 2:  # the second save: last.npz at step 4
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        return real_write(path, state)

    monkeypatch.setattr(checkpoint, "write", write_with_ctrl_c)
    cfg = small_config("train.max_steps=20", "train.checkpoint_every=2", "train.eval_every=100000")
    trainer = training.Trainer(cfg, tmp_path)
    with pytest.raises(Interrupted, match="interrupted at step 4 of 20; the last checkpoint is from step 4"):
        trainer.fit()
    assert checkpoint.read(tmp_path / "checkpoints" / "last.npz").counters["step"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("args,message", [
    (["backend=tpu"], "Could not find 'backend/tpu'"),
    (["optimizer=adamw"], "Could not find 'optimizer/adamw'"),
    (["train.epochs=two"], "train.epochs"),
    (["trian.epochs=1"], "trian"),
    (["optimizer.lr=inf"], "optimizer.lr must be a finite number > 0"),
])
def test_every_refused_override_exits_2(tmp_path, args, message):
    done = cli("netlab.train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("args,message", [(["top=abc"], "top"), (["json=maybe"], "json")])
def test_predict_refuses_wrong_types_with_status_2(tmp_path, args, message):
    done = cli("netlab.predict", "checkpoint=x", "image=y", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


# ======================================================================= 6. the right advice
def test_an_infinite_lr_is_refused_not_divided(capsys):
    with pytest.raises(ConfigError) as err:
        small_config("optimizer.lr=inf")
    assert "for example" not in str(err.value) and "finite number > 0" in str(err.value)


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


def test_a_users_own_data_is_never_advised_deleted(tmp_path, caplog):
    folder = fixture_copy(tmp_path / "mine")
    data.load(data.pipeline.backend.namespace("numpy"), "mnist", folder, download=False)
    assert "differs from the official" in caplog.text and "delete" not in caplog.text.lower()


def test_divergence_advice_names_a_finite_lr(tmp_path):
    with pytest.raises(DivergedError) as err:
        fit(tmp_path / "run", "optimizer=sgd", "optimizer.lr=1e8", "train.max_steps=20", "train.checkpoint_every=1")
    assert "for example to 1e+07" in str(err.value)


# ========================================= 7. a file from outside is data; outputs are atomic
@pytest.fixture(scope="module")
def hostile_run(run, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny run's checkpoint, its config rewritten to read data from (and download into) a
    folder its author chose."""
    import yaml

    tmp = tmp_path_factory.mktemp("hostile")
    evil = tmp / "chosen-by-the-checkpoint"

    def change(a):
        cfg = yaml.safe_load(str(a["config"]))
        cfg["data"].update(root=str(evil), download=True, verify=False)
        a["config"] = np.asarray(yaml.safe_dump(cfg))

    folder = tmp / "run" / "checkpoints"
    folder.mkdir(parents=True)
    tampered(run, tmp, change).rename(folder / "last.npz")
    (folder / "best.npz").write_bytes((folder / "last.npz").read_bytes())
    return folder.parent, evil


def test_evaluate_reads_data_where_the_user_says(hostile_run, tmp_path):
    run_dir, evil = hostile_run
    done = cli("netlab.evaluate", f"checkpoint={run_dir}", f"data.root={FIXTURE}", "data.verify=false",
               f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not evil.exists()


def test_evaluate_never_downloads_where_a_checkpoint_says(hostile_run, tmp_path):
    run_dir, evil = hostile_run
    env_root = tmp_path / "user-data"
    env = {"NETLAB_DATA": str(env_root)}
    done = subprocess.run([sys.executable, "-m", "netlab.evaluate", f"checkpoint={run_dir}", "data.download=false",
                           f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=300)
    assert done.returncode == 2 and f"not found in {env_root / 'mnist'}" in done.stderr, done.stderr
    assert not evil.exists()


def test_predict_touches_no_data_folder(hostile_run, digit_png, tmp_path, capsys):
    run_dir, evil = hostile_run
    predict_app.predict(compose(f"checkpoint={run_dir}", f"image={digit_png}", config_name="predict"))
    assert not evil.exists()


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


@pytest.mark.parametrize("app,args", [
    ("netlab.export", ["out=/proc/no-such-folder/model.onnx"]),
    ("netlab.evaluate", ["out=/proc/no-such-folder"]),
])
def test_an_output_that_cannot_be_written_is_one_paragraph(run, tmp_path, app, args):
    if app == "netlab.export":
        pytest.importorskip("onnx")
    done = cli(app, f"checkpoint={run}", f"data.root={FIXTURE}", "data.verify=false", *args, cwd=tmp_path) \
        if app == "netlab.evaluate" else cli(app, f"checkpoint={run}", "verify=none", *args, cwd=tmp_path)
    assert done.returncode == 2 and "cannot write /proc/no-such-folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
