"""netlab from Python: fit with keyword overrides, load a run, predict on arrays, a summary."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import netlab
import netlab.callbacks
from netlab import saved
from netlab.api import overrides_of
from netlab.data.datasets import DATASETS, load_split
from netlab.errors import ConfigError
from netlab.inference import Predictor
from conftest import FIXTURE

TINY = dict(data__root=str(FIXTURE), data__verify=False, data__download=False, train__batch_size=32,
            train__max_steps=6, train__eval_every=3, train__progress=False)


def test_keywords_become_the_command_lines_overrides():
    assert overrides_of(("model=lenet5",), {"train__epochs": 1, "optimizer": {"lr": 0.01, "betas": [0.8, 0.9]},
                                             "data__root": "my data", "train__resume": None,
                                             "data__shuffle": False}) == [
        "model=lenet5", "train.epochs=1", "optimizer.lr=0.01", "optimizer.betas=[0.8,0.9]",
        "data.root='my data'", "train.resume=null", "data.shuffle=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    return netlab.fit("model=lenet5", out=folder / "run", **TINY)


def test_fit_trains_as_the_command_line_does_and_returns_the_run(run):
    assert run.path.name == "run" and (run.path / "results.json").exists() and (run.path / "metrics.csv").exists()
    assert run.results["model"] == "lenet5" and run.results["steps"] == 6 and 0 < run.results["test_accuracy"] <= 1
    assert "lenet5" in repr(run)


def test_a_loaded_model_predicts_on_arrays_as_the_image_pipeline_does(run):
    model = run.model
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    images = images[:, 0]  # (N, 1, 28, 28): one channel
    probs = model.predict_proba(images)  # uint8 as in the files
    assert probs.shape == (200, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(images.astype(np.float32) / 255), probs, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(images[:, None]), probs, atol=1e-6)  # with the channel axis
    # the same numbers as the pipeline predict and the page use, on one prepared image
    predictor = Predictor(saved.load(run.path))
    digit = images[7].astype(np.float32) / 255
    np.testing.assert_allclose(predictor.probabilities(digit)[0], probs[7], atol=1e-6)
    # and the accuracy the run measured at its best checkpoint
    assert np.mean(model.predict(images) == labels) == pytest.approx(run.results["test_accuracy_at_best_step"])


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 27, 28)), "this model takes"),
    (np.zeros((2, 3, 28, 28)), "this model takes"),
    (np.full((1, 28, 28), np.nan), "NaN or infinite"),
])
def test_images_the_model_cannot_take_are_refused(run, images, message):
    with pytest.raises(ConfigError, match=message):
        run.model.predict(images)


def test_the_summary_lists_every_layer_with_its_output_and_parameters(run):
    summary = run.model.summary()
    assert [r[1] for r in summary][:3] == ["Conv2d", "ReLU", "AvgPool2d"]
    assert summary[0][3] == (6, 28, 28) and summary[0][4] == 6 * 25 + 6
    assert summary[-1][3] == (10,) and sum(r[4] for r in summary) == run.model.trained.model.num_parameters()
    text = str(summary)
    assert "total" in text and f"{run.model.trained.model.num_parameters():,}" in text
    assert max(map(len, text.splitlines())) <= 120


def test_load_latest_finds_the_newest_finished_run(run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(netlab.errors.CheckpointError, match="no finished run"):
        netlab.load("latest")
    later = netlab.fit(**TINY)  # into outputs/DATE/TIME here
    assert later.path.parts[0] == "outputs"
    assert netlab.load("latest").path == later.path / "checkpoints" / "best.npz"
    assert f"latest is {later.path}" in capsys.readouterr().err


def test_fit_shows_its_log_lines_where_nothing_else_catches_them(tmp_path, capsys):
    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers.clear()  # a notebook's or a plain script's logging: no handler anywhere
    try:
        netlab.fit(out=tmp_path / "run", **TINY)
    finally:
        root.handlers[:] = handlers
    out = capsys.readouterr().out
    assert "seed_cnn on numpy" in out and "step  epoch" in out and "done: test accuracy" in out
    assert not logging.getLogger("netlab").handlers  # and leaves logging as it was


def test_fit_refuses_a_sweep_and_bad_values_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="a sweep of several runs"):
        netlab.fit("experiment=study_lr", out=tmp_path / "a", **TINY)
    with pytest.raises(ConfigError, match="optimizer.lr must be a finite number > 0"):
        netlab.fit(optimizer__lr=-1, out=tmp_path / "b", **TINY)
    assert not list(tmp_path.iterdir())


class StopAt(netlab.callbacks.Callback):
    """Ctrl-C at a given step, as the loop sees one (between steps)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.at.step == self.step:
            raise KeyboardInterrupt


def test_fit_continues_an_interrupted_run_from_its_folder_alone(tmp_path):
    settings = {**TINY, "train__max_steps": 9, "train__checkpoint_every": 3, "model__dropout": 0.3}
    whole = netlab.fit(out=tmp_path / "whole", **settings)
    from netlab.training import default_callbacks
    from netlab.config import compose, validate

    cfg = validate(compose(*overrides_of((), settings)))
    with pytest.raises(netlab.errors.Interrupted, match=r"interrupted \(Ctrl-C\) at step 6 of 9"):
        netlab.fit(out=tmp_path / "cut", callbacks=[*default_callbacks(cfg, tmp_path / "cut"), StopAt(6)],
                   **settings)
    assert not (tmp_path / "cut" / "results.json").exists()
    again = netlab.fit(train__resume=str(tmp_path / "cut"))  # the folder alone: its own settings and folder
    assert again.path == tmp_path / "cut"
    keep = ("test_accuracy", "val_accuracy", "train_loss", "best_step", "steps", "images")
    assert {k: again.results[k] for k in keep} == {k: whole.results[k] for k in keep}
    with pytest.raises(netlab.errors.NetlabError, match="nothing to train"):
        netlab.fit(train__resume=str(tmp_path / "cut"))
