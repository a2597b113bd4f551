"""Sweeps: what a multirun's jobs share (failed jobs recorded, where each job ran, a closing
report), the resolvers that the sweep presets in ``conf/sweep/`` use, and netlab's versions of
two engines' plugins.

A job that fails (a bad value, a divergence, a crash) writes ``failure.json`` into its folder,
says so in one line and answers NaN (what sweepers such as Optuna record as a failed trial),
so the other jobs still run; ``netlab.cli.exits.SweepReport`` then sums the failures up and
sets the sweep's exit status. Every job says in its log (``train.log``) where it runs: its
host, and its Slurm job (with how often it was requeued) or its Ray node.

The presets name two classes of this module, built only when they are used and registered with
Hydra as ``hydra_plugins.netlab_sweeps.NAME`` (the presets' callback :class:`RegisterPlugins`;
Hydra takes plugins from that package only):

- ``SlurmLauncher`` (``sweep=slurm``): hydra-submitit-launcher's, which also records a job that
  Slurm ended without a result (``scancel``, a failed node, a time limit reached once more than
  ``max_num_timeout`` allows) as failed in its own folder while the others finish, and asks
  ``squeue`` for the jobs' states on a cluster that keeps no accounting (where ``sacct`` fails).
- ``OptunaSweeper`` (``sweep=optuna_lr``): hydra-optuna-sweeper's, with a study tied to the
  settings it was started with (a search with other settings is refused with the difference
  named), each process's sampler seeded from the seed, its worker id and the trials the study
  already holds (so no two processes, and no two runs of the command, propose the same start-up
  trials), and each trial's run folder recorded in the study (trial user attribute ``run``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from .errors import NetlabError

log = logging.getLogger("netlab.train")

FAILURE_FILE = "failure.json"
WORKER_ENV = "NETLAB_OPTUNA_WORKER"  # this process's worker id in a shared Optuna study (0, 1, ...)
TRIAL_ENV = "NETLAB_OPTUNA_TRIAL"    # set in a job that runs an Optuna trial: the trial's number
SETTINGS_ATTR = "netlab_settings"    # a study's user attribute: the settings it was started with
RUN_ATTR = "run"                     # a trial's user attribute: its run folder


def run_job(fn, cfg):
    """Run one job of a sweep: a failure is recorded in the job's folder, not raised."""
    from hydra.core.hydra_config import HydraConfig

    from .outputs import output_dir, write_json

    hc = HydraConfig.get()
    trial = os.environ.get(TRIAL_ENV)
    log.info("job %s%s runs on %s", hc.job.num, f" (Optuna trial {trial})" if trial else "", placement())
    try:
        return fn(cfg)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        out = output_dir()
        if _out_of_time(exc):
            from .resume import checkpoint_of

            kept = checkpoint_of(out)
            error, message = "TimeLimit", (
                "the job reached its Slurm time limit once more than hydra.launcher.max_num_timeout lets it be "
                "requeued; " + (f"its last checkpoint is kept: continue it with python -m netlab.train "
                                f"train.resume={out}" if kept else "it had written no checkpoint yet"))
        else:
            error = type(exc).__name__
            message = " ".join(str(exc).split()) if isinstance(exc, NetlabError) else f"{type(exc).__name__}: {exc}"
        record = {"job": hc.job.num, "overrides": list(hc.overrides.task), "error": error, "message": message}
        if not isinstance(exc, NetlabError) and error != "TimeLimit":  # a crash: keep what a bug report needs
            record["traceback"] = traceback.format_exc()
        if not (out / "results.json").exists():  # never beside another run's finished results
            write_json(out / FAILURE_FILE, record)
        print(f"netlab: job {hc.job.num} ({' '.join(hc.overrides.task)}) failed: {message}", file=sys.stderr,
              flush=True)
        return float("nan")


def _out_of_time(exc) -> bool:
    """submitit's answer to a job that reached its time limit more often than it may be requeued."""
    return type(exc).__name__ == "UncompletedJobError" and type(exc).__module__.startswith("submitit")


def placement() -> str:
    """Where this process runs: its host, and its Slurm job or Ray node when it runs in one."""
    env = os.environ
    where = [f"host {socket.gethostname()} (pid {os.getpid()})"]
    if env.get("SLURM_JOB_ID"):
        job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if env.get("SLURM_ARRAY_TASK_ID")
               else env["SLURM_JOB_ID"])
        restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
        where.append(f"Slurm job {job} on node {env.get('SLURMD_NODENAME', '?')}"
                     + (f", requeued {restarts} time{'s' * (restarts != 1)}" if restarts else ""))
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        where.append(f"Ray node {ray.get_runtime_context().get_node_id()}")
    return ", ".join(where)


def record_lost_job(folder: Path, job: int, overrides: list[str], error: str, message: str) -> None:
    """A job that ended without answering (Slurm cancelled it, its node failed): ``failure.json`` in
    its folder, and the folder's record of its overrides when it never started, as a job that
    failed by itself leaves them; never beside finished results or the job's own failure record."""
    from .outputs import atomic_write, write_json

    if (folder / "results.json").exists() or (folder / FAILURE_FILE).exists():
        return
    record = folder / ".hydra" / "overrides.yaml"
    if not record.exists():
        atomic_write(record, lambda f: f.write(OmegaConf.to_yaml(OmegaConf.create(list(overrides))).encode()))
    write_json(folder / FAILURE_FILE, {"job": job, "overrides": list(overrides), "error": error, "message": message})


# ------------------------------------------------------------------- resolvers of conf/sweep
def job_dirname(override_dirname: str) -> str:
    """A sweep job's folder name from Hydra's ``override_dirname``: numbers of more than four
    significant digits (Optuna's 0.0012345678901234567) rounded, anything a shell would need
    quoted replaced by '-', at most 100 characters (the job number before it keeps it unique)."""
    def short(item: str) -> str:
        key, sep, value = item.partition("=")
        try:
            number = float(value)
            digits = re.sub(r"[^0-9]", "", value.lower().split("e")[0]).strip("0")  # significant ones
            if ("." in value or "e" in value.lower()) and len(digits) > 4 and math.isfinite(number):
                value = f"{number:.4g}"
        except ValueError:
            pass
        return f"{key}{sep}{value}"

    items = [re.sub(r"[^A-Za-z0-9._=+-]", "-", short(item)) for item in override_dirname.split(",") if item]
    name = ""
    for item in items:  # whole items only, up to 100 characters
        if len(name) + len(item) + 1 > 100:
            break
        name = f"{name},{item}" if name else item
    return name or "defaults"


def threads_per_job(jobs) -> int:
    """CPU threads for each of ``jobs`` parallel jobs on this machine (-1: one job per core), so
    that parallel jobs share the cores instead of each running every core's worth of BLAS."""
    from .backend import cpu_cores

    cores = cpu_cores()
    jobs = cores if int(jobs) < 1 else int(jobs)
    return max(1, cores // jobs)


def gpus_per_job(backend_name: str) -> int:
    """GPUs a sweep job asks its launcher for: one on the GPU backend, none otherwise."""
    return 1 if backend_name == "cupy" else 0


def ray_local(value):
    """``value`` when the Ray launcher starts its own local instance; None when RAY_ADDRESS names
    an existing cluster (ray.init refuses resource settings when it connects to one)."""
    return None if os.environ.get("RAY_ADDRESS") else value


def sampler_seed(*parts) -> int:
    """A sampler seed from ``parts`` (the run's seed and an Optuna worker id, say): the same parts
    give the same seed, different parts different seeds (NumPy's SeedSequence, 31 bits)."""
    import numpy as np

    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


RESOLVERS = {"netlab_job": job_dirname, "netlab_threads_per_job": threads_per_job,
             "netlab_gpus_per_job": gpus_per_job, "netlab_ray_local": ray_local,
             "netlab_sampler_seed": sampler_seed}
for _name, _resolver in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


# --------------------------------------------------------------- the engines' plugins, as netlab runs them
def __getattr__(name: str):
    """``netlab.sweeps.SlurmLauncher`` and ``netlab.sweeps.OptunaSweeper``, built on first use (their
    plugins are optional, and importing them costs time every other command would pay)."""
    if name in _PLUGINS:
        return _PLUGINS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _named(cls, name: str):
    """``cls`` as Hydra's registry of plugins names it: ``hydra_plugins.netlab_sweeps.NAME``."""
    cls.__module__, cls.__name__, cls.__qualname__ = PLUGIN_MODULE, name, name
    return cls


@functools.cache
def _slurm_launcher():
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, JobStatus, filter_overrides
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as Base
    from omegaconf import open_dict
    from submitit.slurm.slurm import SlurmInfoWatcher

    class Watcher(SlurmInfoWatcher):
        """The jobs' states from sacct, or from squeue where the cluster keeps no accounting
        (sacct fails: "Slurm accounting storage is disabled"); a job squeue no longer knows has
        ended (``GONE``: its result file, if any, says how)."""

        accounting = None  # unknown until sacct has answered or failed once

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            output = None
            if self.accounting is not False:
                try:
                    done = subprocess.run(command, capture_output=True, timeout=60)
                    failed = done.returncode != 0
                except (OSError, subprocess.SubprocessError):
                    failed, done = True, None
                if not failed:
                    self.accounting, output = True, done.stdout
                elif self.accounting is None:
                    self.accounting = False
                    log.info("Slurm keeps no accounting here (sacct failed): job states come from squeue")
            if self.accounting is False:
                output = self._squeue()
            if output is not None:
                self._output = output
                self._info_dict.update(self.read_info(output))
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def _squeue(self):
            waiting = self._registered - self._finished
            arrays = sorted({job.split("_")[0] for job in waiting})
            try:
                done = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N",
                                       f"--jobs={','.join(arrays)}"], capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                return None
            if done.returncode != 0 and "Invalid job id" not in done.stderr:
                return None  # the controller did not answer: keep what is known
            lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
            listed = {line.split("|")[0] for line in lines}
            lines += [f"{job}|GONE|" for job in sorted(waiting - listed)]  # purged from the controller's memory
            return "JobID|State|NodeList\n" + "\n".join(lines) + "\n"

    class SlurmLauncher(Base):
        """hydra-submitit-launcher's Slurm launcher; a job that Slurm ended without a result is
        recorded as failed in its folder (and answers NaN) while the others finish."""

        def __reduce__(self):  # by netlab.sweeps: a job process has no hydra_plugins.netlab_sweeps module
            return _launcher_from_state, (dict(self.__dict__),)

        def launch(self, job_overrides, initial_job_idx):
            import submitit

            params = self.params
            executor = submitit.AutoExecutor(
                cluster="slurm", folder=params["submitit_folder"],
                **({"slurm_max_num_timeout": params["max_num_timeout"]} if "max_num_timeout" in params else {}))
            queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(**{k if k in queue_keys else f"slurm_{k}": v for k, v in params.items()
                                          if k not in ("submitit_folder", "max_num_timeout")})
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
            job_params = []
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
            jobs = executor.map_array(self, *zip(*job_params))
            watcher = Watcher(delay_s=30)
            for job in jobs:
                job.watcher = watcher
            log.info("Slurm job array %s: %d jobs, submitit's logs in %s", jobs[0].job_id.split("_")[0], len(jobs),
                     jobs[0].paths.folder.parent)
            return [self._outcome(job, overrides, idx) for job, (overrides, _, idx, *_) in zip(jobs, job_params)]

        def _outcome(self, job, overrides, idx):
            try:
                return job.results()[0]
            except Exception as exc:  # the job ended without an answer: Slurm or submitit say why
                state = str(job.state)
                if type(exc).__name__ == "UncompletedJobError":  # cancelled, its node failed, ...
                    error = f"Slurm{state.title().replace('_', '')}"  # SlurmCancelled, SlurmNodeFail, ...
                    why = f"Slurm ended job {job.job_id} without a result (state {state})"
                else:  # it raised outside netlab's task (netlab's own failures are answers): its last error line
                    raised = [line for line in str(exc).splitlines()
                              if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", line)]
                    error = "SlurmJobFailed"
                    why = f"Slurm job {job.job_id} failed: {raised[-1] if raised else type(exc).__name__}"
                message = f"{why}; its logs: {job.paths.stdout} and {job.paths.stderr}"
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(sweep_config.hydra.job):
                    sweep_config.hydra.job.num = idx
                folder = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
                task = list(sweep_config.hydra.overrides.task)
                record_lost_job(folder, idx, task, error, message)
                print(f"netlab: job {idx} ({' '.join(task)}) failed: {message}", file=sys.stderr, flush=True)
                return JobReturn(overrides=list(overrides), working_dir=str(folder), task_name=job.job_id,
                                 status=JobStatus.COMPLETED, _return_value=float("nan"))

    return _named(SlurmLauncher, "SlurmLauncher")


def study_settings(config, searched=(), fixed=None) -> dict:
    """What a study's trials must share (``config``: the sweep's composed config): every setting a
    resumed run must keep (seed, data, model, optimizer, batch size, length; ``resume.RESUME_MAY_CHANGE``
    says which may differ) except those the study searches, as JSON-ready values."""
    import yaml

    from .config import flatten, validate
    from .resume import RESUME_MAY_CHANGE

    task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    settings = {k: v for k, v in flatten(validate(task)).items()
                if not k.startswith(RESUME_MAY_CHANGE) and k not in searched}
    for key, value in (fixed or {}).items():  # a fixed value among the sweeper's params (text)
        if key in settings:
            settings[key] = yaml.safe_load(str(value))
    return json.loads(json.dumps(settings, default=str))


@functools.cache
def _optuna_sweeper():
    import optuna
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper as Base
    from omegaconf import open_dict

    class TrialLauncher:
        """The sweeper's launcher, which also tells each job its trial (``NETLAB_OPTUNA_TRIAL`` in
        the job's environment) and records each trial's run folder in the study."""

        def __init__(self, launcher, study):
            self.launcher, self.study = launcher, study

        def __getattr__(self, name):
            return getattr(self.launcher, name)

        def launch(self, job_overrides, initial_job_idx):
            running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            trials, jobs = [], []
            for overrides in job_overrides:  # the trials this process just asked for, by their values
                taken = {t.number for t in trials if t is not None}
                mine = next((t for t in running if t.number not in taken
                             and all(f"{k}={v}" in overrides for k, v in t.params.items())), None)
                trials.append(mine)
                jobs.append([*overrides, f"+hydra.job.env_set.{TRIAL_ENV}={mine.number}"] if mine else list(overrides))
            returns = self.launcher.launch(jobs, initial_job_idx=initial_job_idx)
            for trial, ret in zip(trials, returns):
                folder = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
                if trial is not None and folder:
                    self.study._storage.set_trial_user_attr(trial._trial_id, RUN_ATTR, str(Path(folder).resolve()))
            return returns

    class OptunaSweeper(Base):
        """hydra-optuna-sweeper's sweeper, with a study tied to the settings it was started with and
        a sampler seeded per process (see the module's docstring)."""

        def setup(self, *, hydra_context, task_function, config):
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
            self.netlab_config = config

        def sweep(self, arguments):
            from .cli.exits import EXIT_BAD_INPUT, fail

            impl, config = self.sweeper, self.netlab_config
            HydraConfig.instance().set_config(config)
            if impl.storage is None:  # a study in memory: nothing shared, nothing to tie
                return super().sweep(arguments)
            impl.storage = _storage(impl.storage)  # one connection, shown without its password
            searched, _ = create_params_from_overrides(impl._parse_sweeper_params_config() + list(arguments))
            _, fixed = create_params_from_overrides(impl._parse_sweeper_params_config())  # not yet in config
            settings = study_settings(config, searched, fixed)
            try:
                study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
            except KeyError:
                study = optuna.create_study(study_name=impl.study_name, storage=impl.storage, load_if_exists=True,
                                            directions=impl._get_directions())
            started = study.user_attrs.get(SETTINGS_ATTR)
            if started is None:
                study.set_user_attr(SETTINGS_ATTR, settings)
            elif started != settings:
                changed = [f"{k}: {started.get(k)!r} -> {settings.get(k)!r}"
                           for k in sorted(started.keys() | settings.keys()) if started.get(k) != settings.get(k)]
                fail(f"Optuna study {impl.study_name!r} in {_shown_storage(impl.storage)} was started with other "
                     f"settings ({'; '.join(changed)}), so its trials would not compare with this search's. Search "
                     f"with the settings it was started with, or give this search a study of its own "
                     f"(hydra.sweeper.study_name=NAME)", EXIT_BAD_INPUT)
            held = len(study.trials)
            sampler = OmegaConf.select(config, "hydra.sweeper.sampler")
            if held and sampler is not None and "seed" in sampler and OmegaConf.select(sampler, "seed") is not None:
                seed = sampler_seed(sampler.seed, held)  # a later start proposes what earlier ones did not
                impl.sampler = instantiate(sampler, seed=seed)
            else:
                seed = OmegaConf.select(sampler, "seed") if sampler is not None else None
            log.info("Optuna study %s (%d trials so far), worker %s, sampler seed %s", impl.study_name, held,
                     os.environ.get(WORKER_ENV, "0"), seed)
            impl.launcher = TrialLauncher(impl.launcher, study)
            return super().sweep(arguments)

    return _named(OptunaSweeper, "OptunaSweeper")


def _storage(url):
    """Optuna's storage at ``url``, which says its URL without the password when printed (the
    Optuna sweeper logs it)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(url, str) or url.startswith("redis"):
        return url
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its schema plugins' chatter

    class Storage(optuna.storages.RDBStorage):
        def __str__(self) -> str:
            return _shown_storage(self.url)

    for attempt in range(10):
        try:
            return Storage(url)
        except SQLAlchemyError:  # another process creating Optuna's tables in the same database right now
            if attempt == 9:
                raise
            time.sleep(0.5 + (os.getpid() % 7) / 10)


def _shown_storage(url) -> str:
    """A storage URL as it may be shown: without its password."""
    try:
        from sqlalchemy.engine.url import make_url

        return repr(make_url(str(url)))
    except Exception:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", str(url))


_PLUGINS = {"SlurmLauncher": _slurm_launcher, "OptunaSweeper": _optuna_sweeper}
PLUGIN_MODULE = "hydra_plugins.netlab_sweeps"  # where Hydra finds them: it takes plugins from hydra_plugins only


def _launcher_from_state(state):
    """Unpickle a :class:`SlurmLauncher` (submitit sends it to the job, and again on a requeue)."""
    launcher = _slurm_launcher().__new__(_slurm_launcher())
    launcher.__dict__.update(state)
    return launcher


class RegisterPlugins(Callback):
    """A Hydra callback that the presets ``sweep=slurm`` and ``sweep=optuna_lr`` add: Hydra
    instantiates launchers and sweepers only from the classes it knows under ``hydra_plugins``,
    so netlab's are made known (as ``hydra_plugins.netlab_sweeps.NAME``) before it does."""

    def __init__(self, plugin: str) -> None:
        import types

        from hydra.core.plugins import Plugins

        try:
            cls = _PLUGINS[plugin]()
        except ImportError:  # that engine's plugin is not installed: Hydra says so when the preset asks for it
            return
        Plugins.instance().register(cls)
        if PLUGIN_MODULE not in sys.modules:  # Hydra then finds the class by its name
            module = types.ModuleType(PLUGIN_MODULE, "netlab's sweep plugins (netlab.sweeps)")
            module.__getattr__ = __getattr__
            sys.modules[PLUGIN_MODULE] = module
