"""The commands as a user runs them: exit codes, one-paragraph errors, evaluate and predict,
and a real kill -9 in the middle of training."""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import backend, checkpoint, saved
from netlab.data.datasets import DATASETS, load_split
from netlab.data.images import load_digit
from conftest import FIXTURE, ROOT, SMALL, cli


@pytest.mark.parametrize("args,message", [
    (["backend=tpu"], "Could not find 'backend/tpu'"),                  # refused by Hydra while composing
    (["optimizer.lr=fast"], "optimizer.lr"),
    (["trian.epochs=1"], "trian"),
    (["optimizer.lr=-1"], "netlab: error: invalid setting: optimizer.lr must be a finite number > 0"),  # by netlab
    (["+train.max_step=2"], "netlab: error: unknown setting train.max_step; did you mean train.max_steps?"),
    (["data.name=cifar"], "netlab: error: invalid setting: data.name must be one of"),
    (["data.root=/nonexistent/folder", "data.download=false"], "not found in /nonexistent/folder"),
    (["model.layers=[flatten,{lineer:10}]"], "netlab: error: unknown layer 'lineer'"),
    ([*SMALL, "train.resume=/nonexistent/run"], "netlab: error: checkpoint /nonexistent/run not found"),
])
def test_bad_input_exits_2_with_one_message(tmp_path, args, message):
    done = cli("netlab.train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("netlab: error:")]) <= 1


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_cli_cupy_missing_names_the_fix(tmp_path):
    done = cli("netlab.train", "backend=cupy", *SMALL, cwd=tmp_path)
    assert done.returncode == 2 and "netlab[cuda12]" in done.stderr and "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path):
    done = cli("netlab.train", "optimizer.lr=-1", "debug=true", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConfigError" in done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained for 3 epochs on the fixture through the command line."""
    out = tmp_path_factory.mktemp("trained") / "run"
    done = cli("netlab.train", *SMALL, "train.epochs=3", f"hydra.run.dir={out}", cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("which", ["best", "last"])
def test_evaluate_reports_what_training_measured_beside_the_run(trained, tmp_path, which):
    args = [f"checkpoint={trained}", f"data.root={FIXTURE}"] + ([] if which == "best" else ["which=last"])
    done = cli("netlab.evaluate", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((trained / f"evaluation_{which}_test.json").read_text())
    expected = json.loads((trained / "results.json").read_text())
    if which == "best":  # chosen on validation, so its test accuracy is the one at the best step
        assert result["step"] == expected["best_step"]
        assert result["test_accuracy"] == pytest.approx(expected["test_accuracy_at_best_step"])
    else:
        assert result["step"] == expected["reported_step"]
        assert result["test_accuracy"] == pytest.approx(expected["test_accuracy"])
        assert result["test_loss"] == pytest.approx(expected["test_loss"])
    matrix = np.array(result["confusion_matrix"])
    _, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    assert matrix.sum() == 200 and np.array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=10))
    assert np.trace(matrix) == round(200 * result["test_accuracy"])
    per_class = [matrix[i, i] / matrix[i].sum() for i in range(10)]
    assert list(result["per_class_accuracy"].values()) == pytest.approx(per_class)
    assert (trained / f"confusion_{which}_test.png").exists() and "confusion matrix" in done.stdout
    assert not (tmp_path / "outputs").exists()  # nothing left where the command ran


def drawn(image: np.ndarray, dark_on_light: bool) -> Image.Image:
    """An MNIST digit as a user would draw it: large, off-centre, either polarity."""
    background = 255 if dark_on_light else 0
    ink = 255 - image if dark_on_light else image
    paper = Image.new("L", (300, 220), background)
    paper.paste(Image.fromarray(ink).resize((168, 168), Image.Resampling.BICUBIC), (100, 20))
    return paper


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_predict_reads_both_polarities(trained, tmp_path, dark_on_light):
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    drawn(images[0], dark_on_light).save(tmp_path / "digit.png")
    done = cli("netlab.predict", f"checkpoint={trained}", f"image={tmp_path / 'digit.png'}", "json=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["class"] == str(labels[0]) and sum(answer["probabilities"].values()) <= 1.0 + 1e-6
    assert not (tmp_path / "outputs").exists()  # predict leaves no run directory behind
    # the probabilities are the model's on the prepared, normalised digit (computed here in float64)
    loaded = saved.load(trained)
    model, mean, std = loaded.model, loaded.mean, loaded.std
    model.to(backend.namespace("numpy"), dtype=np.float64)
    x = (load_digit(tmp_path / "digit.png").astype(np.float64)[None, None] - mean) / std
    logits = backend.to_numpy(model.forward(x))[0]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for cls, p in answer["probabilities"].items():
        assert p == pytest.approx(probs[int(cls)], abs=1e-5), cls


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_user_digit_is_prepared_like_mnist(tmp_path, dark_on_light):
    images, _ = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
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


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    """A real SIGKILL at a random moment: the atomic checkpoint survives and resuming ends identical."""
    args = [*SMALL, "train.max_steps=60", "train.checkpoint_every=3", "model.dropout=0.2", "data.augment.enabled=true"]
    env_cmd = [sys.executable, "-m", "netlab.train", *args]

    def run(out, *extra, wait=True):
        cmd = [*env_cmd, *extra, f"hydra.run.dir={out}"]
        env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300) if wait else \
            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    assert run(tmp_path / "straight").returncode == 0
    proc = run(tmp_path / "killed", wait=False)
    last = tmp_path / "killed" / "checkpoints" / "last.npz"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.3))  # anywhere: mid-step, mid-evaluation, mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = checkpoint.read(last).counters["step"]
    assert step < 60, "the run finished before it was killed; nothing was tested"
    done = run(tmp_path / "resumed", f"train.resume={tmp_path / 'killed'}")
    assert done.returncode == 0, done.stderr
    a, b = checkpoint.read(tmp_path / "straight"), checkpoint.read(tmp_path / "resumed")
    for part in ("model", "optimizer"):
        for k, v in getattr(a, part).items():
            np.testing.assert_array_equal(v, getattr(b, part)[k], err_msg=k)


def run_on_a_terminal(args, cwd, size=(40, 160), timeout=120) -> str:
    """Run ``python -m ARGS`` with stdout and stderr on a pseudo-terminal of ``size`` (rows,
    columns; (0, 0) as some terminals report); returns what it showed."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("size", [(40, 160), (0, 0)])
def test_a_terminal_shows_each_evaluation_once_and_a_live_loss(tmp_path, size):
    shown = run_on_a_terminal(["netlab.train", *SMALL[:-1], "train.epochs=3", "train.max_steps=45",
                               "train.eval_every=15", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, size)
    for step in (15, 17, 30, 34, 45):  # every 15 steps and at each epoch's end (17 batches an epoch)
        assert shown.count(f"step {step:6d} epoch") == 1, shown
    assert "/45 [" in shown and "step/s" in shown  # tqdm's bar itself
    assert any(", loss " in part.split("]")[0] for part in shown.split("/45 [")[1:])  # with the loss
    assert "lr 0.003 is the peak of a one-cycle schedule" in shown


def test_predict_answers_each_image_of_a_folder_a_glob_or_a_list(trained, tmp_path):
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    folder = tmp_path / "my digits"
    folder.mkdir()
    for i in range(3):
        drawn(images[i], dark_on_light=bool(i % 2)).save(folder / f"digit {i}.png")
    (folder / "a=b.png").write_bytes((folder / "digit 0.png").read_bytes())
    (folder / "notes.txt").write_text("not an image, not listed")

    def answers(*image_args):
        done = cli("netlab.predict", f"checkpoint={trained}", *image_args, "json=true", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    by_folder = answers(f"image={folder}")
    assert [Path(a["image"]).name for a in by_folder] == ["a=b.png", "digit 0.png", "digit 1.png", "digit 2.png"]
    assert [a["class"] for a in by_folder[1:]] == [str(labels[i]) for i in range(3)]
    assert answers(f"image={folder}/digit ?.png") == by_folder[1:]  # a glob
    # the README's quoting rule: quote a path holding = , [ ] or quotes inside the override
    assert answers(f"image=['{folder}/a=b.png','{folder}/digit 2.png']") == [by_folder[0], by_folder[3]]


def test_predict_reports_unreadable_images_and_answers_the_rest(trained, tmp_path):
    images, _ = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    drawn(images[0], True).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("junk")
    done = cli("netlab.predict", f"checkpoint={trained}", f"image={tmp_path}", "json=true", cwd=tmp_path)
    assert done.returncode == 2
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("error" in r, Path(r["image"]).name) for r in records] == [(True, "bad.png"), (False, "good.png")]
    assert "1 of 2 images could not be read" in done.stderr and "Traceback" not in done.stderr


def test_predict_with_nothing_to_read(trained, tmp_path):
    done = cli("netlab.predict", f"checkpoint={trained}", f"image={tmp_path}/*.png", cwd=tmp_path)
    assert done.returncode == 2 and "no images found" in done.stderr


@pytest.mark.parametrize("args", [["optimizer.lr=-1"], ["data.root=/nonexistent", "data.download=false"],
                                  ["model.layers=[flatten,{linear:3}]"]])
def test_a_refused_run_leaves_no_empty_output_folder(tmp_path, args):
    done = cli("netlab.train", *args, cwd=tmp_path)
    assert done.returncode == 2
    leftovers = list((tmp_path / "outputs").rglob("*")) if (tmp_path / "outputs").exists() else []
    assert leftovers == []


def test_a_refused_run_never_removes_a_folder_with_other_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    done = cli("netlab.train", "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2 and (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_help_describes_every_key(tmp_path):
    from netlab.config import OPTIMIZER_CONFIGS

    done = cli("netlab.train", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    keys = [line.strip() for line in done.stdout.split("== Keys (key=value) ==")[1].split("==")[0].splitlines()
            if line.strip()]
    assert all(": " in line for line in keys), [line for line in keys if ": " not in line]
    for name, cls in OPTIMIZER_CONFIGS.items():
        assert f"optimizer.lr (optimizer={name}, default {cls.lr!r})" in done.stdout
    assert "train.epochs (default 2): passes over the training images" in done.stdout
    sgd = cli("netlab.train", "optimizer=sgd", "--help", cwd=tmp_path).stdout.split("== This run's config ==")[1]
    assert "momentum: 0.0" in sgd and "betas" not in sgd  # only the chosen optimizer's fields


def test_the_readme_smoke_run_runs_as_written(tmp_path):
    import re
    import shlex

    readme = " ".join((ROOT / "README.md").read_text().split())
    command = re.search(r"`(python -m netlab\.train data\.root=tests/data/mnist-small[^`]*)`", readme).group(1)
    args = shlex.split(command)[2:]  # after "python -m"
    done = cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_accuracy"] > 0.5


def test_the_bar_refreshes_the_loss_every_few_steps_without_a_sync_per_step():
    from netlab.console import Progress

    class Bar:
        def __init__(self):
            self.updates, self.postfix = 0, None

        def update(self, n):
            self.updates += n

        def set_postfix_str(self, text, refresh):
            self.postfix = text

    class Running:  # counts host syncs
        count, syncs = 64, 0

        def total_loss(self):
            self.syncs += 1
            return 64 * 0.25

    progress, running = Progress(enabled=False, total=100, initial=0, every=20), Running()
    progress.bar = Bar()
    for step in range(1, 60):
        progress.step(step, running)
    assert progress.bar.updates == 59 and running.syncs == 2  # steps 20 and 40 only
    assert progress.bar.postfix == "loss 0.2500"
    progress.evaluated(0.5, 0.9712)
    assert progress.bar.postfix == "loss 0.5000 val 97.12%"
    progress.bar = None  # what a run off a terminal has: nothing to draw, nothing synced
    progress.step(80, running)
    assert running.syncs == 2
