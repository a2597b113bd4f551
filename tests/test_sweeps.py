"""Sweeps that survive and scale out: failed jobs recorded while the others run, short job
folders, cores shared between parallel jobs, submitit, a shared Optuna study, and Ray; and the
same on real engines started by the scripts in tests/services/: a one-node Slurm cluster (a job
array, a cancelled job, a job requeued past its time limit), a PostgreSQL server for an Optuna
study searched by two processes at once, and a two-node Ray cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlab import checkpoint, config, saved, sweeps
from conftest import ROOT, SMALL, cli, command_env, rows, wait_for

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
    """SQLite: a second run of the command continues the study, and proposes none of the first
    run's trials again (the sampler's seed takes in the trials the study already holds)."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def search(n_trials, name):
        done = cli("netlab.train", "-m", "sweep=optuna_lr", f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
                   "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweeper.storage={storage}", *TINY,
                   f"hydra.sweep.dir={tmp_path / name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]

    search(4, "first")
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    search(2, "again")  # a second process on the same storage continues the same study
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert len(study.trials) == 6 and {"optimizer.lr", "optimizer.weight_decay"} <= set(study.best_params)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6  # nothing proposed twice
    for trial in study.trials:  # each trial knows its run folder, and the run its trial
        log = (Path(trial.user_attrs["run"]) / "train.log").read_text()
        assert f"(Optuna trial {trial.number})" in log


STUDY = "lr_wd-seed_cnn-mnist-adam"  # the preset's study name for the default model, data and optimizer


@pytest.mark.skipif(not installed("hydra_plugins.hydra_optuna_sweeper"), reason="the sweep extra is not installed")
def test_an_optuna_study_is_named_by_and_tied_to_its_settings(tmp_path):
    """Another model gets a study of its own; another setting under the same study name is
    refused with one paragraph naming it, before anything is written; each worker's sampler
    seed is its own and reproducible."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        default = compose("config", overrides=["sweep=optuna_lr"], return_hydra_config=True).hydra.sweeper
        mlp = compose("config", overrides=["sweep=optuna_lr", "model=mlp"], return_hydra_config=True).hydra.sweeper
    assert default.study_name == STUDY and mlp.study_name == "lr_wd-mlp-mnist-adam"
    assert default.sampler.seed == sweeps.sampler_seed(0, 0)  # NETLAB_OPTUNA_WORKER unset: worker 0
    assert len({sweeps.sampler_seed(seed, worker) for seed in range(3) for worker in range(3)}) == 9

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    done = cli("netlab.train", "-m", "sweep=optuna_lr", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={storage}",
               *TINY, f"hydra.sweep.dir={tmp_path / 'first'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    before = (tmp_path / "study.db").read_bytes()
    done = cli("netlab.train", "-m", "sweep=optuna_lr", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={storage}",
               *TINY, "model.dropout=0.5", f"hydra.sweep.dir={tmp_path / 'other'}", cwd=tmp_path)
    assert_one_paragraph(done, f"Optuna study '{STUDY}'", "model.dropout: 0.25 -> 0.5")
    assert (tmp_path / "study.db").read_bytes() == before and not (tmp_path / "other").exists()


def assert_one_paragraph(done, *said):
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("netlab: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert all(s in errors[0] for s in said), errors[0]


def test_train_resume_auto_continues_only_a_run_that_holds_a_checkpoint(tmp_path):
    """train.resume=auto (what sweep=slurm sets) goes on in the run's own folder when it holds a
    checkpoint; a single run with nothing to continue is refused, writing nothing."""
    out = tmp_path / "run"
    done = cli("netlab.train", "train.resume=auto", *SMALL, "train.max_steps=4", f"hydra.run.dir={out}", cwd=tmp_path)
    assert_one_paragraph(done, "train.resume=auto", "holds no checkpoint")
    assert not out.exists()
    done = cli("netlab.train", *SMALL, "train.max_steps=6", "train.epochs=100", "optimizer.schedule.name=constant",
               f"hydra.run.dir={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    done = cli("netlab.train", "train.resume=auto", *SMALL, "train.max_steps=10", "train.epochs=100",
               "optimizer.schedule.name=constant", f"hydra.run.dir={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in (out / "train.log").read_text()
    assert json.loads((out / "results.json").read_text())["steps"] == 10


def ray_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if "raylet" in line or "gcs_server" in line]


@pytest.mark.ray
def test_a_sweep_on_a_local_ray_instance(tmp_path):
    """The launcher starts a Ray instance bound to 127.0.0.1, runs a 2x2 sweep on it, and the
    instance is gone when the sweep ends."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    assert not ray_processes(), "a Ray instance is already running here"
    env = {k: None for k in os.environ if k.startswith("RAY_ADDRESS")}  # a local instance, not one found there
    env.update(RAY_USAGE_STATS_ENABLED="0")
    sweep = tmp_path / "sweep"
    try:
        done = cli("netlab.train", "-m", "sweep=ray", "optimizer.lr=0.01,0.001", "model.dropout=0,0.2", *TINY,
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=env, timeout=300)
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


# ------------------------------------------------------------------- real engines, started by tests/services
SERVICES = ROOT / "tests" / "services"


def alive(pattern: str) -> list[str]:
    """The processes (not zombies, which only wait for their parent to read their status) whose
    command line holds ``pattern``."""
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line for line in out if pattern in line and line.split(None, 2)[1][:1] != "Z"
            and str(os.getpid()) != line.split(None, 1)[0]]


@contextlib.contextmanager
def service(script: str, folder: Path, env: dict | None = None):
    """``tests/services/SCRIPT start FOLDER`` (its output: the lines to export), then ``stop`` when
    the block ends, whatever happens in it; the stop must leave nothing running."""
    def run(action):
        return subprocess.run(["bash", str(SERVICES / script), action, str(folder)], capture_output=True, text=True,
                              timeout=300, env=command_env(env))

    started = run("start")
    try:
        assert started.returncode == 0, f"{script} start failed:\n{started.stdout}\n{started.stderr}"
        yield dict(re.findall(r"(\w+)=(\S+)", started.stdout.split("#")[0]))
    finally:
        stopped = run("stop")
        assert stopped.returncode == 0, f"{script} stop left something:\n{stopped.stdout}\n{stopped.stderr}"


def sbin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


# ----------------------------------------------------------------------------------------------- Slurm
def slurm_missing() -> str | None:
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel") if not sbin(c)]
    if missing:
        return f"needs Slurm and munge ({', '.join(missing)} not found): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "needs root: tests/services/slurm.sh runs slurmd, which starts jobs as their users"
    if not installed("hydra_plugins.hydra_submitit_launcher"):
        return 'needs the sweep extra: pip install -e ".[sweep]"'
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster (tests/services/slurm.sh) for this module's Slurm tests: the
    environment that points commands at it."""
    if slurm_missing():
        pytest.skip(slurm_missing())
    folder = tmp_path_factory.mktemp("slurm")
    with service("slurm.sh", folder) as exports:
        yield {"SLURM_CONF": exports["SLURM_CONF"]}
    assert not alive(str(folder)), "a Slurm daemon of the test cluster still runs"


# The cluster's partition, and jobs that fit its node: 1 core, 1 GB.
ON_THE_CLUSTER = ("sweep=slurm", "hydra.launcher.partition=netlab", "hydra.launcher.cpus_per_task=1",
                  "hydra.launcher.mem_gb=1")


def slurm_jobs(sweep: Path) -> dict[str, str]:
    """Job folder number -> the Slurm job it runs or ran as, from the job's own log (jobs that
    have not started yet are left out)."""
    found = {}
    for number, job in (jobs(sweep) if sweep.is_dir() else {}).items():
        said = re.findall(r"Slurm job (\d+_\d+) on node", (job / "train.log").read_text()) \
            if (job / "train.log").is_file() else []
        if said:
            found[number] = said[-1]
    return found


def test_a_slurm_job_array_with_a_cancelled_job(slurm, tmp_path, spawn):
    """A 2x2 sweep runs as a Slurm job array: each job in its own Slurm job (submitit's ids and
    logs under .submitit/), each folder with its results; a job cancelled with scancel while it
    runs is recorded as failed in its folder while the others finish."""
    sweep = tmp_path / "sweep"
    log = (tmp_path / "sweep.log").open("w")
    proc = spawn("netlab.train", "-m", *ON_THE_CLUSTER, "hydra.launcher.timeout_min=10", "optimizer.lr=0.01,0.001",
                 "model.dropout=0,0.2", *SMALL, "train.epochs=100", "train.max_steps=400", "train.eval_every=200",
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=slurm, stdout=log, stderr=subprocess.STDOUT)
    started = wait_for(lambda: slurm_jobs(sweep).get("1"), "job 1 to start on the cluster", timeout=180, proc=proc)
    subprocess.run(["scancel", started], env=command_env(slurm), check=True)
    assert proc.wait(timeout=300) == 2, (tmp_path / "sweep.log").read_text()[-3000:]
    said = (tmp_path / "sweep.log").read_text()
    assert "1 of 4 jobs failed, the others finished: job 1" in said and "CANCELLED" in said, said[-3000:]
    found = jobs(sweep)
    array = started.split("_")[0]
    for number in ("0", "2", "3"):
        assert (found[number] / "results.json").is_file()
        assert slurm_jobs(sweep)[number] == f"{array}_{number}"  # run by Slurm, as that job of the array
    for number in "0123":  # submitit's own record of each job: its folder, logs and result
        logs = sweep / ".submitit" / f"{array}_{number}"
        assert (logs / f"{array}_{number}_0_log.out").is_file() and (logs / f"{array}_{number}_0_log.err").is_file()
    failure = json.loads((found["1"] / "failure.json").read_text())
    assert failure["error"] == "SlurmCancelled" and f"job {started}" in failure["message"]
    assert not (found["1"] / "results.json").exists()
    summary = cli("netlab.summarize", str(sweep), cwd=tmp_path)
    assert summary.returncode == 0 and "Not finished (1)" in summary.stdout
    assert f"failed: Slurm ended job {started} without a result (state CANCELLED)" in summary.stdout


def test_a_slurm_job_past_its_time_limit_is_requeued_and_ends_as_if_uninterrupted(slurm, tmp_path, spawn):
    """A run that needs several times its 1-minute limit: Slurm warns it (USR2) before the limit,
    submitit requeues it, and it goes on from its last checkpoint in its own folder
    (train.resume=auto), until it ends with the metrics of a run that was never interrupted."""
    run = (*SMALL, "optimizer.lr=0.003", "train.epochs=1000", "train.max_steps=2000", "train.eval_every=250",
           "train.checkpoint_every=50")
    sweep, reference = tmp_path / "sweep", tmp_path / "reference"
    log = (tmp_path / "sweep.log").open("w")
    proc = spawn("netlab.train", "-m", *ON_THE_CLUSTER, "hydra.launcher.timeout_min=1",
                 "hydra.launcher.signal_delay_s=15", "hydra.launcher.max_num_timeout=12", *run,
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=slurm, stdout=log, stderr=subprocess.STDOUT)
    uninterrupted = spawn("netlab.train", *run, "backend.threads=1", f"hydra.run.dir={reference}", cwd=tmp_path)
    assert proc.wait(timeout=900) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    assert uninterrupted.wait(timeout=600) == 0
    job = jobs(sweep)["0"]
    said = (job / "train.log").read_text()
    restarts = [int(n) for n in re.findall(r"requeued (\d+) times?", said)]
    assert restarts and max(restarts) == len(restarts), said  # requeued, each time resuming ...
    assert said.count("resumed from") == len(restarts)  # ... from its checkpoint in its own folder
    assert rows(job) == rows(reference)  # every evaluation as in the uninterrupted run (elapsed_s aside)
    ran, ref = (json.loads((folder / "results.json").read_text()) for folder in (job, reference))
    assert {k: ran[k] for k in ("test_accuracy", "val_accuracy", "steps")} == \
           {k: ref[k] for k in ("test_accuracy", "val_accuracy", "steps")}


# ------------------------------------------------------------------------------------------ PostgreSQL
def postgres_missing() -> str | None:
    paths = os.pathsep.join([os.environ.get("PATH", ""), *map(str, Path("/usr/lib/postgresql").glob("*/bin"))])
    missing = [c for c in ("initdb", "pg_ctl", "psql") if not shutil.which(c, path=paths)]
    if missing:
        return f"needs PostgreSQL ({', '.join(missing)} not found): apt-get install postgresql"
    if not (installed("hydra_plugins.hydra_optuna_sweeper") and installed("psycopg2")):
        return 'needs the sweep extra (Optuna, psycopg2): pip install -e ".[sweep]"'
    return None


@pytest.mark.skipif(postgres_missing() is not None, reason=str(postgres_missing()))
def test_two_processes_search_one_optuna_study_in_postgresql(tmp_path, spawn):
    """Two sweep processes (worker ids 0 and 1) share one study through PostgreSQL at once: both
    propose, none proposes a trial twice, every trial knows its run folder, and summarize over
    both sweeps names the study's best trial's run."""
    import optuna

    with service("postgres.sh", tmp_path / "postgres") as exports:
        storage = exports["NETLAB_OPTUNA_STORAGE"]
        procs = [spawn("netlab.train", "-m", "sweep=optuna_lr", "hydra.sweeper.n_trials=3", *TINY,
                       f"hydra.sweep.dir={tmp_path / 'study' / f'worker{w}'}", cwd=tmp_path,
                       env={"NETLAB_OPTUNA_STORAGE": storage, "NETLAB_OPTUNA_WORKER": w},
                       stdout=(tmp_path / f"worker{w}.log").open("w"), stderr=subprocess.STDOUT) for w in (0, 1)]
        for w, proc in enumerate(procs):
            assert proc.wait(timeout=300) == 0, (tmp_path / f"worker{w}.log").read_text()[-3000:]
        study = optuna.load_study(study_name=STUDY, storage=storage)
        trials = study.trials
        assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
        assert len({tuple(sorted(t.params.items())) for t in trials}) == 6  # no trial proposed twice
        by_worker = {w: sorted(t.number for t in trials if f"/worker{w}/" in t.user_attrs["run"]) for w in (0, 1)}
        assert len(by_worker[0]) == len(by_worker[1]) == 3, by_worker
        for trial in trials:
            assert f"(Optuna trial {trial.number})" in (Path(trial.user_attrs["run"]) / "train.log").read_text()
        best = study.best_trial
        for w in (0, 1):
            assert "Storage: postgresql://netlab:***@" in (tmp_path / f"worker{w}.log").read_text()  # no password shown
    summary = cli("netlab.summarize", str(tmp_path / "study"), cwd=tmp_path)  # both processes' sweeps
    assert summary.returncode == 0, summary.stderr
    worker, number = re.search(r"Best by validation accuracy: run (worker\d)/(\d+) ", summary.stdout).groups()
    named = next((tmp_path / "study" / worker).glob(f"{number}_*")).resolve()
    assert {t.user_attrs["run"]: t.value for t in trials}[str(named)] == best.value  # the best trial's run (or a tie's)
    assert f"{100 * best.value:.2f}% val" in summary.stdout, summary.stdout


# -------------------------------------------------------------------------------------------------- Ray
@pytest.mark.ray
def test_a_sweep_on_a_two_node_ray_cluster(tmp_path):
    """A head and a second node on loopback (tests/services/ray_cluster.sh); a sweep pointed at it
    with RAY_ADDRESS runs its jobs on both nodes (each job's log names its node); the cluster is
    gone afterwards."""
    if not installed("hydra_plugins.hydra_ray_launcher") or not (Path(sys.executable).parent / "ray").exists():
        pytest.skip('needs the ray extra: pip install -e ".[ray]"')
    bin_dir = str(Path(sys.executable).parent)  # the ray command of this environment
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"}
    folder = tmp_path / "ray"
    with service("ray_cluster.sh", folder, env) as exports:
        nodes = dict(line.split() for line in (folder / "node_ids").read_text().splitlines())
        assert sorted(nodes.values()) == ["127.0.0.2", "127.0.0.3"]  # both on loopback
        temp_dir = (folder / "temp_dir").read_text().strip()
        sweep = tmp_path / "sweep"
        done = cli("netlab.train", "-m", "sweep=ray", "optimizer.lr=0.01,0.003,0.001,0.0003", *SMALL,
                   "train.max_steps=100", "train.eval_every=100", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                   env={**env, **exports}, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        ran_on = {number: re.findall(r"Ray node (\w+)", (job / "train.log").read_text())[-1]
                  for number, job in jobs(sweep).items()}
        assert len(ran_on) == 4 and set(ran_on.values()) == set(nodes), (ran_on, nodes)  # on both nodes, only those
    assert not alive(temp_dir) and not alive(exports["RAY_ADDRESS"]), "a process of the Ray cluster still runs"
