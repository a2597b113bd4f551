"""The commands as a user runs them (train, evaluate, predict) and the exit policy: exit codes,
one-paragraph errors, Ctrl-C, data read only where the user says, a real kill -9 in the middle of
training."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import backend, checkpoint, saved
from netlab.cli import evaluate as evaluate_app, predict as predict_app
from netlab.config import compose
from netlab.data.datasets import DATASETS, load_split
from netlab.data.images import load_digit
from netlab.outputs import write_json
from conftest import FIXTURE, ROOT, SMALL, assert_one_paragraph, cli, drawn, in_process, tampered, wait_for


# ------------------------------------------------- command defaults that keep a run's files safe
def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["results.json", "metrics.csv", "train.log", "curves.png", "checkpoints/best.npz",
                                    "checkpoints/last.npz", ".hydra/config.yaml", "checkpoints/other.onnx"])
def test_export_never_writes_over_a_runs_own_files(run, tmp_path, capsys, target):
    """``out=`` naming a file the run keeps for itself is refused before anything is read or
    written, on every install (the check comes before the format's package is needed)."""
    from netlab.cli import export as export_app

    before = _snapshot(run)
    status, err = in_process(export_app.export, "export", f"checkpoint={run}", f"out={run / target}",
                             "format=safetensors", capsys=capsys)
    assert_one_paragraph(err, status)
    assert "one of the run's own files" in err or "the file it is made from" in err, err
    assert _snapshot(run) == before


def test_export_writes_beside_the_checkpoint_by_default_not_over_it():
    """The default ``out`` is None: the command then writes <which>.<format> into the run folder."""
    from netlab.config import ExportConfig

    assert (ExportConfig.out, ExportConfig.which, ExportConfig.verify) == (None, "best", "random")


@pytest.mark.parametrize("out", ["checkpoints", ".hydra"])
def test_evaluate_never_writes_into_a_runs_checkpoints(run, tmp_path, capsys, out):
    before = _snapshot(run)
    status, err = in_process(evaluate_app.evaluate, "evaluate", f"checkpoint={run}", f"out={run / out}",
                             f"data.root={FIXTURE}", "data.verify=false", capsys=capsys)
    assert_one_paragraph(err, status)
    assert "one of the run's own files" in err, err
    assert _snapshot(run) == before


def test_data_is_read_where_the_user_says_by_default():
    """evaluate and export take the data folder and downloading from their own settings (a
    checkpoint's are never consulted): root None means $NETLAB_DATA or netlab's cache."""
    from netlab.config import EvaluateConfig, ExportConfig, SourceDataConfig

    assert EvaluateConfig(checkpoint="RUN").data == ExportConfig(checkpoint="RUN").data \
        == SourceDataConfig(root=None, download=True, verify=True)
    assert (EvaluateConfig.which, EvaluateConfig.split) == ("best", "test")


# ---------------------------------------------- the summary names the best run (text that is right)
def test_the_summary_names_the_run_with_the_best_validation_accuracy(tmp_path):
    """Three runs whose validation, test and best-validation orders all differ, the best by
    validation neither first nor last: the line names run 1, its overrides and its figures."""
    from conftest import make_sweep
    from netlab.cli import summarize

    def results(val, test, best):
        return json.dumps({"val_accuracy": val, "test_accuracy": test, "best_val_accuracy": best,
                           "train_time_s": 3.0, "images_per_s": 100.0, "epochs": 1, "steps": 10})

    root = make_sweep(tmp_path / "sweep", {"0_a1": results(0.90, 0.97, 0.99), "1_b2": results(0.95, 0.92, 0.96),
                                           "2_c3": results(0.93, 0.94, 0.95), "3_d4": None})
    text = summarize.markdown(*summarize.runs(root))
    best = [line for line in text.splitlines() if line.startswith("Best by")]
    assert best == ["Best by validation accuracy: run 1 `optimizer.lr=2`, 95.00% val, 92.00% test."], text


@pytest.mark.parametrize("args,message", [
    (["backend=tpu"], "unknown option backend=tpu; choose one of: array_api_strict, cupy"),  # refused by Hydra while composing
    (["optimizer.lr=fast"], "optimizer.lr"),
    (["trian.epochs=1"], "trian"),
    (["optimizer.lr=-1"], "netlab: error: invalid setting: optimizer.lr must be a finite number > 0"),  # by netlab
    (["+train.max_step=2"], "netlab: error: unknown setting train.max_step; did you mean train.max_steps?"),
    (["data.name=cifar"], "netlab: error: invalid setting: data.name must be one of"),
    (["data.root=/nonexistent/folder", "data.download=false"], "not found in /nonexistent/folder"),
    (["model.layers=[flatten,{lineer:10}]"], "netlab: error: unknown layer 'lineer'"),
    ([*SMALL, "train.resume=/nonexistent/run"], "netlab: error: train.resume=/nonexistent/run: no run to continue"),
    (["experiment=fast99", "optimizer.betas=[0.9,1.0]"], "optimizer.betas must be a finite number in [0, 1) (each)"),
    (["experiment=fast99", "train.label_smoothing=nan"], "train.label_smoothing must be a finite number in [0, 1)"),
])
def test_bad_input_exits_2_with_one_message(tmp_path, args, message):
    done = cli("netlab.train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written
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


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_predict_reads_both_polarities(trained, tmp_path, dark_on_light):
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    images = images[:, 0]  # (N, 1, 28, 28): one channel
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


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, spawn, rng):
    """A real SIGKILL at a random moment: the atomic checkpoint survives and resuming ends identical.
    The moment is drawn from the test's seeded generator, so a failure can be reproduced."""
    # train.epochs=100: the run's length is max_steps (2 epochs of the fixture are only 34 steps)
    args = [*SMALL, "train.epochs=100", "train.max_steps=150", "train.checkpoint_every=3", "model.dropout=0.2",
            "data.augment.enabled=true"]

    def run(out, *extra):
        return cli("netlab.train", *args, *extra, f"hydra.run.dir={out}", cwd=tmp_path)

    assert run(tmp_path / "straight").returncode == 0
    pause = float(rng.uniform(0.0, 0.3))  # anywhere: mid-step, mid-evaluation, mid-checkpoint
    when = f"killed {pause:.3f}s after the first checkpoint"
    proc = spawn("netlab.train", *args, f"hydra.run.dir={tmp_path / 'killed'}", cwd=tmp_path)
    last = tmp_path / "killed" / "checkpoints" / "last.npz"
    wait_for(last.exists, "the run's first checkpoint", proc=proc)
    time.sleep(pause)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = checkpoint.read(last).counters["step"]
    assert step < 150, f"the run finished before it was killed; nothing was tested ({when})"
    # train.resume=RUN alone continues RUN in its own folder, with its own settings
    done = cli("netlab.train", f"train.resume={tmp_path / 'killed'}", cwd=tmp_path)
    assert done.returncode == 0, f"{when}\n{done.stderr}"
    a, b = checkpoint.read(tmp_path / "straight"), checkpoint.read(tmp_path / "killed")
    assert b.counters["step"] == 150 and "resumed from" in (tmp_path / "killed" / "train.log").read_text()
    for part in ("model", "optimizer"):
        for k, v in getattr(a, part).items():
            np.testing.assert_array_equal(v, getattr(b, part)[k], err_msg=f"{k} ({when})")


def test_predict_answers_each_image_of_a_folder_a_glob_or_a_list(trained, tmp_path):
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    images = images[:, 0]  # (N, 1, 28, 28): one channel
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
    images = images[:, 0]  # (N, 1, 28, 28): one channel
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


def test_help_fills_whatever_fields_its_template_names(tmp_path):
    # netlab works out a help field only when the template names it (exits._lazy_help_fields);
    # a template that names Hydra's flag list (or its group lists, which cost seconds) still gets it.
    done = cli("netlab.train", "--help", "hydra.help.template='flags: $FLAGS_HELP config: $CONFIG'", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "flags: --help,-h : Application's help" in done.stdout and "--hydra-help : Hydra's help" in done.stdout
    assert "nested=overrides) config: backend:\n  name: numpy" in done.stdout
    assert "optimizer:\n  name: adam" in done.stdout
    unknown = cli("netlab.train", "--help", "hydra.help.template='$NOPE'", cwd=tmp_path)
    assert_one_paragraph(unknown.stderr, unknown.returncode)
    assert "hydra.help.template names $NOPE; a help template may name $FLAGS_HELP" in unknown.stderr
    assert not list(tmp_path.iterdir())  # a refused help writes nothing


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


# ------------------------------------------------- bad input: one paragraph and exit status 2
@pytest.mark.parametrize("args,message", [
    (["backend=tpu"], "unknown option backend=tpu"),
    (["optimizer=lamb"], "unknown option optimizer=lamb; choose one of: adagrad, adam, adamw, momentum"),
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


APP_ARGUMENTS = [
    # (app, overrides, message); {run}, {digit} and {tmp} are filled in
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
    ("evaluate", ["backend.conv=fft", "model=fast_cnn"], "(backend.conv=fft)"),
]
APPS = {"predict": predict_app.predict, "evaluate": evaluate_app.evaluate}


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


def test_an_output_that_cannot_be_written_is_one_paragraph(run, tmp_path):
    done = cli("netlab.evaluate", f"checkpoint={run}", f"data.root={FIXTURE}", "data.verify=false",
               "out=/proc/no-such-folder", cwd=tmp_path)
    assert done.returncode == 2 and "cannot write /proc/no-such-folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------ Ctrl-C: exit status 130
def _sigint_default_in_child():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_says_where_the_run_stopped_and_exits_130(tmp_path, spawn):
    out = tmp_path / "run"
    proc = spawn("netlab.train", *SMALL, "train.epochs=100000", "train.checkpoint_every=2",
                 "train.eval_every=100000", f"hydra.run.dir={out}", cwd=tmp_path, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True,
                 preexec_fn=_sigint_default_in_child)  # a user's terminal, even under CI run with &
    # (the spawn fixture never leaves this 100000-epoch run behind, whatever happens)
    wait_for(lambda: (out / "checkpoints" / "last.npz").exists(), "the run's first checkpoint", proc=proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert_one_paragraph(err, proc.returncode, 130)
    assert f"continue with python -m netlab.train train.resume={out}" in err
    checkpoint.read(out)  # what it saved is intact


# ------------------------------------------- a checkpoint's data folder is data, never instructions
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
    done = cli("netlab.evaluate", f"checkpoint={run_dir}", "data.download=false", f"hydra.run.dir={tmp_path / 'eval'}",
               cwd=tmp_path, env={"NETLAB_DATA": str(env_root)})
    assert done.returncode == 2 and f"not found in {env_root / 'mnist'}" in done.stderr, done.stderr
    assert not evil.exists()


def test_predict_touches_no_data_folder(hostile_run, digit_png, tmp_path, capsys):
    run_dir, evil = hostile_run
    predict_app.predict(compose(f"checkpoint={run_dir}", f"image={digit_png}", config_name="predict"))
    assert not evil.exists()



# ------------------------------------------------------------ adversarial: names shown on one line, escaped
from netlab.cli.exits import shown  # noqa: E402

NAMES = ["my digit.png", "a=b.png", "ziffer-ä.png", "数字.png", "naïve café.png", "emoji-7️⃣.png",
         "two\nlines.png", "cr\rreturn.png", "tab\there.png", "\x1b[2Jcleared.png", "\x1b]0;title\x07.png",
         "nul\x00byte.png", "bell\x07.png", "del\x7f.png", "back\x08space.png", "\x1b[31mred\x1b[0m.png",
         "vt\x0bff\x0c.png", "csi\x9b2J.png", "nel\x85line.png", "ls\u2028sep.png", "ps\u2029sep.png",
         "esc-only-\x1b", "fs\x1c gs\x1d rs\x1e us\x1f.png", "invoice\u202egnp.exe", "lrm\u200e\u2066iso\u2069.png"]
HIDDEN = "\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # not Cc, hidden all the same


@pytest.mark.parametrize("name", NAMES)
def test_a_file_name_is_shown_on_one_line_escaped(name):
    """Spaces, '=', non-ASCII letters kept; newlines, escape sequences and other control characters escaped."""
    out = shown(name)
    assert len(out.splitlines()) == 1, repr(out)
    assert not any(unicodedata.category(c) == "Cc" or c in HIDDEN for c in out), repr(out)
    kept = [c for c in name if unicodedata.category(c) != "Cc" and c not in HIDDEN]
    assert out == "".join(c if c in kept else c.encode("unicode_escape").decode() for c in name)  # in order
    for c in name:
        if unicodedata.category(c) == "Cc" or c in HIDDEN:
            assert c.encode("unicode_escape").decode() in out, (c, out)
    if name == out:
        assert all(unicodedata.category(c) != "Cc" for c in name)


def test_predict_shows_a_hostile_file_name_on_one_line(tmp_path, run, capsys):
    """predict's answer line for an image named with a newline and an escape sequence stays one line."""
    source = ROOT / "tests" / "data"
    image = tmp_path / "evil\n\x1b[2J.png"
    drawn(np.full((28, 28), 255, np.uint8), False).save(image)
    from netlab.cli.predict import predict
    cfg = compose(f"checkpoint={run}", "image=placeholder.png", config_name="predict")
    cfg.image = str(image)
    predict(cfg)
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "evil" in l)
    assert "evil\\n\\x1b[2J.png:" in line and "\x1b" not in out
