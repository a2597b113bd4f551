"""Sweeps that survive and scale out: failed jobs recorded while the others run, short job
folders, cores shared between parallel jobs, submitit, a shared Optuna study, and Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netlab import checkpoint, config, saved, sweeps
from conftest import ROOT, SMALL, cli

TINY = (*SMALL, "train.max_steps=4", "train.eval_every=2")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package (hydra_plugins) is missing
        return False


def jobs(sweep: Path) -> dict[str, Path]:
    return {p.name.split("_")[0]: p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()}


def test_a_diverging_job_is_recorded_and_the_others_run(tmp_path):
    sweep = tmp_path / "sweep"
    done = cli("netlab.train", "-m", "optimizer=sgd", "optimizer.lr=0.01,1e4,0.02", "optimizer.schedule.name=constant",
               *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]  # the sweep says something failed ...
    assert "1 of 3 jobs failed, the others finished: job 1 (optimizer=sgd optimizer.lr=10000.0" in done.stderr
    assert "Traceback" not in done.stderr
    found = jobs(sweep)
    assert (found["0"] / "results.json").exists() and (found["2"] / "results.json").exists()  # ... after all ran
    failure = json.loads((found["1"] / "failure.json").read_text())
    assert failure["error"] == "DivergedError" and "training diverged" in failure["message"]
    assert "optimizer.lr=10000.0" in failure["overrides"]
    summary = cli("netlab.summarize", str(sweep), cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert "Not finished (1)" in summary.stdout and "failed: training diverged" in summary.stdout
    assert "Best by validation accuracy: run" in summary.stdout


def test_a_crashing_job_is_recorded_with_its_traceback(tmp_path):
    """A bug in a job (any exception) is recorded like a divergence, with what a report needs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from netlab.cli.exits import user_errors

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["seed=3"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 7
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.overrides.task = ["seed=3"]
    HydraConfig.instance().set_config(cfg)
    try:
        result = user_errors(lambda c: 1 / 0)(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert result != result  # NaN: a failed trial for Optuna
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["job"] == 7 and failure["error"] == "ZeroDivisionError" and "1 / 0" in failure["traceback"]


@pytest.mark.parametrize("overrides,folder", [
    ("optimizer.lr=0.0012345678901234567,optimizer.weight_decay=1.2345678e-05",
     "optimizer.lr=0.001235,optimizer.weight_decay=1.235e-05"),
    ("optimizer.lr=10000.0,seed=12345678", "optimizer.lr=10000.0,seed=12345678"),
    ("model.layers=[flatten,{linear:10}]", "model.layers=-flatten,-linear-10--"),
    ("", "defaults"),
    (",".join(f"data.augment.rotate_p={i / 10}" for i in range(30)), None),
])
def test_job_folders_are_short_and_shell_friendly(overrides, folder):
    name = sweeps.job_dirname(overrides)
    if folder is not None:
        assert name == folder
    assert len(name) <= 100 and all(c.isalnum() or c in "._=,+-" for c in name)


@pytest.mark.skipif(not installed("hydra_plugins.hydra_joblib_launcher"), reason="the sweep extra is not installed")
def test_joblib_jobs_share_the_cores(tmp_path):
    from netlab import checkpoint

    sweep = tmp_path / "sweep"
    done = cli("netlab.train", "-m", "sweep=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.01,0.001", *TINY,
               f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    cores = len(os.sched_getaffinity(0))
    for job in jobs(sweep).values():
        loaded = saved.embedded_config(checkpoint.read(job), str(job))
        assert loaded.backend.threads == max(1, cores // 2)


@pytest.mark.skipif(not installed("hydra_plugins.hydra_submitit_launcher"), reason="the sweep extra is not installed")
def test_submitit_local_runs_the_slurm_code_path(tmp_path):
    sweep = tmp_path / "sweep"
    done = cli("netlab.train", "-m", "hydra/launcher=submitit_local", "optimizer=sgd", "optimizer.lr=0.01,1e4",
               "optimizer.schedule.name=constant", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 2 and "1 of 2 jobs failed" in done.stderr, done.stderr[-3000:]
    found = jobs(sweep)
    assert (found["0"] / "results.json").exists() and (found["1"] / "failure.json").exists()


@pytest.mark.skipif(not installed("hydra_plugins.hydra_submitit_launcher"), reason="the sweep extra is not installed")
def test_the_slurm_preset_asks_for_one_gpu_per_job():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        gpu = compose("config", overrides=["sweep=slurm", "backend=cupy"], return_hydra_config=True).hydra.launcher
        cpu = compose("config", overrides=["sweep=slurm"], return_hydra_config=True).hydra.launcher
    assert "SlurmLauncher" in gpu._target_ and gpu.gpus_per_node == 1 and cpu.gpus_per_node == 0
    assert gpu.timeout_min > 0 and gpu.array_parallelism >= 1


@pytest.mark.skipif(not installed("hydra_plugins.hydra_optuna_sweeper"), reason="the sweep extra is not installed")
@pytest.mark.skipif(not installed("hydra_plugins.hydra_joblib_launcher"), reason="the sweep extra is not installed")
def test_optuna_trials_two_at_a_time_on_a_shared_study_that_resumes(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def search(n_trials, name):
        done = cli("netlab.train", "-m", "sweep=optuna_lr", f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
                   "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweeper.storage={storage}", *TINY,
                   f"hydra.sweep.dir={tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]

    search(4, "first")
    study = optuna.load_study(study_name="netlab_lr_wd", storage=storage)
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    search(2, "again")  # a second process on the same storage continues the same study
    study = optuna.load_study(study_name="netlab_lr_wd", storage=storage)
    assert len(study.trials) == 6 and {"optimizer.lr", "optimizer.weight_decay"} <= set(study.best_params)


def ray_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if "raylet" in line or "gcs_server" in line]


@pytest.mark.ray
def test_a_sweep_on_a_local_ray_instance(tmp_path):
    """The launcher starts a Ray instance bound to 127.0.0.1, runs a 2x2 sweep on it, and the
    instance is gone when the sweep ends."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    assert not ray_processes(), "a Ray instance is already running here"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT))
    sweep = tmp_path / "sweep"
    try:
        done = subprocess.run([sys.executable, "-m", "netlab.train", "-m", "sweep=ray", "optimizer.lr=0.01,0.001",
                               "model.dropout=0,0.2", *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Started a local Ray instance" in done.stderr + done.stdout
        assert "127.0.0.1" in done.stderr + done.stdout
        assert len(list(sweep.rglob("results.json"))) == 4
        summary = cli("netlab.summarize", str(sweep), cwd=tmp_path)
        assert summary.returncode == 0 and "Best by validation accuracy" in summary.stdout
        assert not ray_processes()  # stopped with the sweep
    finally:
        ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
        if ray_processes() and ray_cli:
            subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
