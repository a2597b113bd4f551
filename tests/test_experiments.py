"""Study presets compose, and a 2x2 multirun sweep runs end to end and is summarised."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from netlab.config import validate

from conftest import FIXTURE, ROOT, SMALL, cli


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package (hydra_plugins) is missing
        return False


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def composed(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_a_study_preset_runs_as_a_sweep_without_dash_m(tmp_path):
    done = cli("netlab.train", "experiment=study_dropout", *SMALL, "train.max_steps=2", "train.eval_every=2",
               f"hydra.sweep.dir={tmp_path / 'study'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.parent.name for p in (tmp_path / "study").rglob("results.json"))
    assert len(runs) == 2 and "model.dropout=0.0" in runs[0] and "model.dropout=0.5" in runs[1]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_presets_compose_and_validate(name):
    cfg = composed(f"experiment={name}")
    validate({k: v for k, v in cfg.items() if k != "hydra"})
    if name.startswith("study_"):
        assert cfg.hydra.sweeper.params, f"{name} has no search space"


def test_optuna_search_space_is_lr_and_weight_decay():
    """Read from the preset itself, so it is checked without the sweep extra too."""
    from omegaconf import OmegaConf

    params = OmegaConf.load(ROOT / "conf" / "sweep" / "optuna_lr.yaml").hydra.sweeper.params
    assert dict(params) == {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
                            "optimizer.weight_decay": "tag(log, interval(1e-6, 1e-3))"}


def test_seeds_sweep_preset():
    assert composed("sweep=seeds").hydra.sweeper.params.seed == "0,1,2"


@pytest.mark.skipif(not installed("hydra_plugins.hydra_optuna_sweeper"),
                    reason="the sweep extra is not installed")
def test_optuna_preset_composes():
    cfg = composed("sweep=optuna_lr")
    assert cfg.hydra.sweeper.direction == "maximize" and "optimizer.lr" in cfg.hydra.sweeper.params


@pytest.mark.skipif(not installed("hydra_plugins.hydra_joblib_launcher"),
                    reason="the sweep extra is not installed")
def test_joblib_preset_composes():
    assert "joblib" in composed("sweep=joblib").hydra.launcher._target_.lower()


@pytest.mark.skipif(not installed("hydra_plugins.hydra_optuna_sweeper"),
                    reason="the sweep extra is not installed")
def test_optuna_search_maximises_val_accuracy(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "netlab.train", "-m", "sweep=optuna_lr", "hydra.sweeper.n_trials=2",
         f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.max_steps=4",
         "train.eval_every=2", "train.progress=false", f"hydra.sweep.dir={tmp_path / 'optuna'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    best = (tmp_path / "optuna" / "optimization_results.yaml").read_text()
    assert "optimizer.lr" in best and "best_value" in best
    assert len(list((tmp_path / "optuna").rglob("results.json"))) == 2


def test_two_by_two_multirun_and_summary(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sweep_dir = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "netlab.train", "-m", "optimizer.lr=0.01,0.001", "model.dropout=0,0.2",
         f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.max_steps=4",
         "train.eval_every=2", "train.batch_size=32", "train.progress=false", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(sweep_dir.rglob("results.json"))) == 4
    summary = subprocess.run([sys.executable, "-m", "netlab.summarize", str(sweep_dir)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, summary.stderr
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert len(rows) == 4
    assert {r["overrides"] for r in rows} == {f"optimizer.lr={lr} model.dropout={p}"
                                              for lr in ("0.01", "0.001") for p in ("0", "0.2")}
    assert (sweep_dir / "comparison.png").stat().st_size > 10_000
    assert summary.stdout.count("| ") > 4 and "val acc" in summary.stdout
