"""Study presets compose, a 2x2 multirun sweep runs end to end and is summarised, and the
summary reads partial sweeps and refuses what it cannot summarise."""

from __future__ import annotations

import csv
import importlib.util

import pytest
from hydra import compose, initialize_config_dir

from netlab.config import validate

from conftest import FIXTURE, GOOD, ROOT, SMALL, cli, make_sweep


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
    done = cli("netlab.train", "-m", "sweep=optuna_lr", "hydra.sweeper.n_trials=2",
               f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.max_steps=4",
               "train.eval_every=2", "train.progress=false", f"hydra.sweep.dir={tmp_path / 'optuna'}",
               cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    best = (tmp_path / "optuna" / "optimization_results.yaml").read_text()
    assert "optimizer.lr" in best and "best_value" in best
    assert len(list((tmp_path / "optuna").rglob("results.json"))) == 2


def test_two_by_two_multirun_and_summary(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = cli("netlab.train", "-m", "optimizer.lr=0.01,0.001", "model.dropout=0,0.2",
               f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.max_steps=4",
               "train.eval_every=2", "train.batch_size=32", "train.progress=false", f"hydra.sweep.dir={sweep_dir}",
               cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(sweep_dir.rglob("results.json"))) == 4
    summary = cli("netlab.summarize", str(sweep_dir), cwd=tmp_path, timeout=120)
    assert summary.returncode == 0, summary.stderr
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert len(rows) == 4
    assert {r["overrides"] for r in rows} == {f"optimizer.lr={lr} model.dropout={p}"
                                              for lr in ("0.01", "0.001") for p in ("0", "0.2")}
    assert (sweep_dir / "comparison.png").stat().st_size > 10_000
    assert summary.stdout.count("| ") > 4 and "val acc" in summary.stdout


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
