"""The training app on the small real-MNIST fixture: configs, outputs, resume, errors, evaluate, predict."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from netlab import backend, models
from netlab.config import validate
from netlab.data.io import load_digit
from netlab.errors import ConfigError, DivergedError
from netlab.train import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "mnist-small"
SMALL = [f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.batch_size=32",
         "train.eval_every=5", "train.checkpoint_every=5", "train.eval_batch_size=100", "train.progress=false"]


def cfg_with(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[*SMALL, *overrides])


def run_train(tmp_path, *overrides, name="run"):
    out = tmp_path / name
    out.mkdir()
    return train(cfg_with(*overrides), out), out


def weights(out, which="last"):
    return backend.load_arrays(out / "checkpoints" / f"{which}.npz")


# --------------------------------------------------------------------------- config checks
@pytest.mark.parametrize("override,message", [
    ("optimizer.lr=-0.1", "optimizer.lr must be > 0"),
    ("train.batch_size=0", "train.batch_size must be an integer >= 1"),
    ("data.val_fraction=1.5", r"data.val_fraction must be in \(0, 1\)"),
    ("model.dropout=1.0", r"model.dropout must be in \[0, 1\)"),
    ("data.augment.rotate_p=2", "rotate_p must be a probability"),
    ("data.augment.mode=sometimes", "data.augment.mode must be"),
    ("optimizer.schedule.name=warp", "optimizer.schedule.name must be one of"),
    ("train.max_steps=0", "train.max_steps must be >= 1"),
])
def test_invalid_values_are_refused_before_training(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(cfg_with(override))


def test_wrong_type_is_refused_while_composing():
    with pytest.raises(Exception, match="optimizer.lr"):
        cfg_with("optimizer.lr=fast")


@pytest.mark.parametrize("name", ["seed_cnn", "lenet5", "mlp", "bn_cnn"])
def test_every_model_file_builds(name):
    cfg = validate(cfg_with(f"model={name}"))
    model = models.build(cfg.model)
    x = model.xp.zeros((2, 1, 28, 28), dtype=model.xp.float32)
    assert tuple(model.forward(x).shape) == (2, 10)


@pytest.mark.parametrize("layers,message", [
    (["flatten", {"lineer": 10}], "unknown layer 'lineer'"),
    ([{"linear": 10}], "add 'flatten' before it"),
    (["flatten", {"linear": 7}], r"must give \(10,\)"),
    ([{"conv": {"kernel": 3}}, "flatten", {"linear": 10}], "needs the argument 'out'"),
    ([{"conv": {"out": 4, "kernel": 40}}, "flatten", {"linear": 10}], "does not fit"),
])
def test_model_file_errors(layers, message):
    cfg = validate(cfg_with())
    cfg.model.layers = layers
    with pytest.raises(ConfigError, match=message):
        models.build(cfg.model)


# ---------------------------------------------------------------------------- outputs
def test_outputs_and_formats(tmp_path):
    val_acc, out = run_train(tmp_path, "train.max_steps=12")
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "results.json", "curves.png", "checkpoints"}
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "epoch", "split", "loss", "accuracy", "lr", "elapsed_s"]
    assert [r["split"] for r in rows[:3]] == ["train", "val", "test"]
    assert sorted({int(r["step"]) for r in rows}) == [5, 10, 12]
    results = json.loads((out / "results.json").read_text())
    for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_time_s", "images_per_s",
                "backend", "device", "epochs", "steps", "seed"):
        assert key in results
    assert results["steps"] == 12 and results["val_accuracy"] == val_acc
    assert 0.3 < val_acc <= 1.0  # 12 steps of a real CNN on real digits already learn something
    for which in ("last", "best"):
        with np.load(out / "checkpoints" / f"{which}.npz", allow_pickle=False) as ck:
            assert int(ck["step"]) in (5, 10, 12) and "model.0.weight" in ck.files and "config" in ck.files
    assert int(weights(out)["step"]) == 12


@pytest.mark.parametrize("backend_name", ["array_api_strict", "torch"])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_whole_training_loop_on_other_backends(tmp_path, backend_name, mode):
    """The loop, augmentation, dropout, evaluation and checkpoints use only the standard."""
    if backend_name == "torch":
        pytest.importorskip("torch")
    _, out = run_train(tmp_path, f"backend={backend_name}", "train.max_steps=4", "train.eval_every=2",
                       f"data.augment.mode={mode}", "data.augment.copies=1", "data.augment.blotch_p=0.5",
                       "data.augment.noise_p=0.5", "data.limit=100")
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == backend_name and results["steps"] == 4
    assert 0.0 <= results["test_accuracy"] <= 1.0


def test_backends_train_the_same_model(tmp_path):
    """One code path: the same seed gives the same run on every backend (bit-identical on
    array-api-strict, which computes with NumPy; float32 round-off on PyTorch)."""
    over = ["train.max_steps=6", "train.eval_every=3", "data.limit=200"]

    def metrics(name):
        _, out = run_train(tmp_path, f"backend={name}", *over, name=name)
        return [(r["step"], r["split"], float(r["loss"]), float(r["accuracy"]))
                for r in csv.DictReader(open(out / "metrics.csv"))]

    reference = metrics("numpy")
    assert metrics("array_api_strict") == reference
    if importlib.util.find_spec("torch") is not None:
        for ours, theirs in zip(metrics("torch"), reference, strict=True):
            assert ours[:2] == theirs[:2] and ours[3] == theirs[3] and ours[2] == pytest.approx(theirs[2], abs=1e-5)


def test_same_seed_same_metrics(tmp_path):
    _, a = run_train(tmp_path, "train.max_steps=10", "model.dropout=0.3", "data.augment.enabled=true", name="a")
    _, b = run_train(tmp_path, "train.max_steps=10", "model.dropout=0.3", "data.augment.enabled=true", name="b")
    _, c = run_train(tmp_path, "train.max_steps=10", "seed=1", name="c")

    def table(out):
        with open(out / "metrics.csv") as f:
            return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(f)]

    assert table(a) == table(b)
    assert table(a) != table(c)


def test_epochs_and_epoch_end_evaluation(tmp_path):
    # 540 training images / 64 = 9 batches per epoch; the epoch ends are evaluation points too
    _, out = run_train(tmp_path, "train.epochs=2", "train.batch_size=64", "train.eval_every=100")
    steps = sorted({int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv"))})
    assert steps == [9, 18]


def test_offline_augmentation_trains_on_more_images(tmp_path):
    _, out = run_train(tmp_path, "train.epochs=1", "train.batch_size=64", "train.eval_every=100",
                       "data.augment.enabled=true", "data.augment.mode=offline", "data.augment.copies=1")
    assert json.loads((out / "results.json").read_text())["steps"] == 17  # 1080 images / 64


def test_early_stopping(tmp_path):
    _, out = run_train(tmp_path, "train.epochs=50", "train.eval_every=1", "train.patience=2", "optimizer.lr=1e-7")
    assert json.loads((out / "results.json").read_text())["steps"] < 50 * 17


# ----------------------------------------------------------------------------- resume
def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch):
    over = ["train.max_steps=17", "train.checkpoint_every=3", "model.dropout=0.2", "data.augment.enabled=true",
            "optimizer=momentum"]
    _, straight = run_train(tmp_path, *over, name="straight")

    # crash a second run inside its evaluation at step 15: its last checkpoint is from step 12,
    # between two evaluation points, so the running train metrics must survive too
    import netlab.train as train_module

    real = train_module.Run.evaluate

    def crash_at_15(self, bar):
        result = real(self, bar)
        if self.step == 15:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(train_module.Run, "evaluate", crash_at_15)
    with pytest.raises(KeyboardInterrupt):
        run_train(tmp_path, *over, name="interrupted")
    monkeypatch.setattr(train_module.Run, "evaluate", real)
    assert int(weights(tmp_path / "interrupted")["step"]) == 12
    _, resumed = run_train(tmp_path, *over, f"train.resume={tmp_path / 'interrupted'}", name="resumed")
    a, b = weights(straight), weights(resumed)
    for k in a:
        if k.startswith(("model.", "optim.", "rng.")):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    def rows(out):
        return [(r["step"], r["split"], r["loss"], r["accuracy"]) for r in csv.DictReader(open(out / "metrics.csv"))]

    assert rows(straight) == rows(resumed)


def test_resume_with_another_model_is_refused(tmp_path):
    run_train(tmp_path, "train.max_steps=5", name="first")
    with pytest.raises(ConfigError, match="different model"):
        run_train(tmp_path, "train.max_steps=10", "model=mlp", f"train.resume={tmp_path / 'first'}", name="second")


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    """A real SIGKILL at a random moment: the atomic checkpoint survives and resuming ends identical."""
    import random
    import signal
    import time

    args = [*SMALL, "train.max_steps=60", "train.checkpoint_every=3", "model.dropout=0.2", "data.augment.enabled=true"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def cli(out, *extra, wait=True):
        cmd = [sys.executable, "-m", "netlab.train", *args, *extra, f"hydra.run.dir={out}"]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300) if wait else \
            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    assert cli(tmp_path / "straight").returncode == 0
    proc = cli(tmp_path / "killed", wait=False)
    last = tmp_path / "killed" / "checkpoints" / "last.npz"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.3))  # anywhere: mid-step, mid-evaluation, mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = int(backend.load_arrays(last)["step"])
    assert step < 60, "the run finished before it was killed; nothing was tested"
    done = cli(tmp_path / "resumed", f"train.resume={tmp_path / 'killed'}")
    assert done.returncode == 0, done.stderr
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for k in a:
        if k.startswith(("model.", "optim.")):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ----------------------------------------------------------------------------- divergence
def test_nan_loss_stops_with_advice_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(DivergedError, match="lower lr|Lower optimizer.lr") as err:
        run_train(tmp_path, "optimizer=sgd", "optimizer.lr=1e8", "train.max_steps=100", "train.checkpoint_every=1",
                  "train.eval_every=50")
    assert "last good checkpoint is kept" in str(err.value)
    kept = weights(tmp_path / "run")
    assert all(np.all(np.isfinite(v)) for k, v in kept.items() if k.startswith("model."))


# ------------------------------------------------------------------------------- the CLI
def cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["backend=tpu"], "Could not find 'backend/tpu'"),
    (["optimizer.lr=-1"], "optimizer.lr must be > 0"),
    ([f"data.root={FIXTURE}", "data.download=false"], "SHA-256 mismatch"),
    (["data.root=/nonexistent/folder", "data.download=false"], "not found in /nonexistent/folder"),
])
def test_cli_errors_are_one_paragraph_and_non_zero(tmp_path, args, message):
    done = cli("netlab.train", *args, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_cli_cupy_missing_names_the_fix(tmp_path):
    done = cli("netlab.train", "backend=cupy", *SMALL, cwd=tmp_path)
    assert done.returncode == 2 and "netlab[cuda]" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_and_predict(tmp_path):
    _, out = run_train(tmp_path, "train.epochs=3")
    done = cli("netlab.evaluate", f"checkpoint={out}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    expected = json.loads((out / "results.json").read_text())
    assert result["test_accuracy"] == pytest.approx(expected["test_accuracy"])
    assert np.array(result["confusion_matrix"]).sum() == 200 and (tmp_path / "eval" / "confusion.png").exists()
    assert "confusion matrix" in done.stdout and "per" not in done.stderr

    # a digit as a user would draw it: large, dark ink on white paper, off-centre
    from netlab.data.files import DATASETS, load_split

    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    paper = Image.new("L", (300, 220), 255)
    paper.paste(Image.fromarray(255 - images[0]).resize((168, 168), Image.Resampling.BICUBIC), (100, 20))
    paper.save(tmp_path / "digit.png")
    done = cli("netlab.predict", f"checkpoint={out}", f"image={tmp_path / 'digit.png'}", "json=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["class"] == str(labels[0]) and sum(answer["probabilities"].values()) <= 1.0 + 1e-6
    assert not (tmp_path / "outputs").exists()  # predict leaves no run directory behind


def test_user_digit_is_prepared_like_mnist(tmp_path):
    from netlab.data.files import DATASETS, load_split

    images, _ = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    original = images[1].astype(np.float64) / 255
    Image.fromarray(255 - images[1]).resize((280, 280), Image.Resampling.BICUBIC).save(tmp_path / "d.png")
    prepared = load_digit(tmp_path / "d.png")
    assert prepared.shape == (28, 28) and prepared.max() == pytest.approx(1.0, abs=0.02)
    assert np.corrcoef(prepared.ravel(), original.ravel())[0, 1] > 0.8
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    with pytest.raises(Exception, match="no digit found"):
        load_digit(tmp_path / "blank.png")


def test_pool_before_relu_is_exactly_the_plain_network():
    cfg = validate(cfg_with()).model
    fast, plain = models.build(cfg), models.build(cfg, pool_first=False)
    assert [type(m).__name__ for m in fast][:3] == ["Conv2d", "MaxPool2d", "ReLU"]
    assert [type(m).__name__ for m in plain][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    plain.load_state_dict(fast.state_dict())
    fast.set_rng(backend.Generator(5))  # the same dropout masks in both
    plain.set_rng(backend.Generator(5))
    xp = fast.xp
    x = backend.Generator(0).normal(xp, (8, 1, 28, 28))
    ya, yb = fast.forward(x), plain.forward(x)
    np.testing.assert_array_equal(backend.to_numpy(ya), backend.to_numpy(yb))
    dy = backend.Generator(1).normal(xp, tuple(ya.shape))
    np.testing.assert_array_equal(backend.to_numpy(fast.backward(dy)), backend.to_numpy(plain.backward(dy)))
    for k, g in fast.grads.items():
        np.testing.assert_array_equal(backend.to_numpy(g), backend.to_numpy(plain.grads[k]), err_msg=k)
