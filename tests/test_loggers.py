"""Loggers: metrics.csv by default, TensorBoard events and MLflow runs read back with their own
libraries; a sweep logged to MLflow gives one run per job."""

from __future__ import annotations

import csv

import pytest

from netlab import training
from netlab.errors import ConfigError
from conftest import SMALL, cli, small_config

RUN = ("train.max_steps=6", "train.eval_every=3")


def test_csv_is_the_default(tmp_path):
    training.Trainer(small_config(*RUN), tmp_path / "a").fit()
    rows = list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    assert [(r["step"], r["split"]) for r in rows] == [(s, p) for s in ("3", "6") for p in ("train", "val", "test")]


def test_csv_can_be_left_out(tmp_path):
    pytest.importorskip("tensorboardX")
    training.Trainer(small_config(*RUN, "logger=[tensorboard]"), tmp_path / "b").fit()
    assert not (tmp_path / "b" / "metrics.csv").exists() and (tmp_path / "b" / "results.json").exists()


def test_tensorboard_events_read_back_with_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    results = training.Trainer(small_config(*RUN, "logger=[csv,tensorboard]"), tmp_path / "run").fit()
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"),
                                                size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    assert {"train/loss", "val/accuracy", "test/accuracy", "lr"} <= set(events.Tags()["scalars"])
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("test/accuracy")][-1] == \
        (6, round(results["test_accuracy"], 6))
    assert "curves" in events.Tags()["images"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [e.value for e in events.Scalars("val/loss")] == pytest.approx(
        [float(r["loss"]) for r in rows if r["split"] == "val"], rel=1e-6)


def test_mlflow_run_holds_params_metrics_and_artifacts(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the artifact store of a default SQLite tracking store is ./mlruns
    results = training.Trainer(small_config(*RUN, "logger=[csv,mlflow]", "optimizer.lr=0.002"), tmp_path / "run").fit()
    client = mlflow.tracking.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "netlab"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["optimizer.lr"] == "0.002"
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [m.step for m in history] == [3, 6]
    assert run.data.metrics["test/accuracy"] == pytest.approx(results["test_accuracy"])  # one naming: the curve's last point
    assert run.data.metrics["test_accuracy_at_best_step"] == pytest.approx(results["test_accuracy_at_best_step"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "results.json", "best.npz"} <= artifacts


def test_a_failed_run_is_marked_failed_in_mlflow(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="diverged"):
        training.Trainer(small_config("logger=[mlflow]", "optimizer=sgd", "optimizer.lr=1e8", "train.max_steps=20"),
                         tmp_path / "run").fit()
    (run,) = mlflow.tracking.MlflowClient(uri).search_runs(
        [mlflow.tracking.MlflowClient(uri).get_experiment_by_name("netlab").experiment_id])
    assert run.info.status == "FAILED"


def test_a_sweep_logged_to_mlflow_gives_one_run_per_job(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = cli("netlab.train", "-m", "optimizer.lr=0.01,0.001", "model.dropout=0,0.2", "logger=[csv,mlflow]",
               "logger.mlflow.experiment=sweep", f"logger.mlflow.tracking_uri={uri}", *SMALL, "train.max_steps=2",
               "train.eval_every=2", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert len(runs) == 4 and {r.data.params["optimizer.lr"] for r in runs} == {"0.01", "0.001"}
    assert len({r.info.run_name for r in runs}) == 4  # named after the job folders


@pytest.mark.parametrize("override,message", [
    ("logger=[csv,tensorbord]", "Could not load 'logger/tensorbord'"),
    ("+logger.mlflow.experimnt=x", "experimnt"),
])
def test_logger_mistakes_are_refused(tmp_path, override, message):
    done = cli("netlab.train", override, *SMALL, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_an_unknown_logger_in_a_config_is_refused():
    from netlab.config import validate, compose
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose())
    cfg["logger"] = {"wandb": {}}
    with pytest.raises(ConfigError, match="logger must be among csv, tensorboard, mlflow, got 'wandb'"):
        validate(OmegaConf.create(cfg))
