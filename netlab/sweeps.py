"""Sweeps: what a multirun's jobs share (failed jobs recorded, a closing report) and the
resolvers that the sweep presets in ``conf/sweep/`` use.

A job that fails (a bad value, a divergence, a crash) writes ``failure.json`` into its folder,
says so in one line and answers NaN (what sweepers such as Optuna record as a failed trial),
so the other jobs still run; ``netlab.cli.exits.SweepReport`` then sums the failures up and
sets the sweep's exit status.
"""

from __future__ import annotations

import math
import os
import re
import sys
import traceback

from omegaconf import OmegaConf

from .errors import NetlabError

FAILURE_FILE = "failure.json"


def run_job(fn, cfg):
    """Run one job of a sweep: a failure is recorded in the job's folder, not raised."""
    from hydra.core.hydra_config import HydraConfig

    from .outputs import output_dir, write_json

    try:
        return fn(cfg)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        hc = HydraConfig.get()
        message = " ".join(str(exc).split()) if isinstance(exc, NetlabError) else f"{type(exc).__name__}: {exc}"
        record = {"job": hc.job.num, "overrides": list(hc.overrides.task), "error": type(exc).__name__,
                  "message": message}
        if not isinstance(exc, NetlabError):  # a crash: keep what a bug report needs
            record["traceback"] = traceback.format_exc()
        if not (output_dir() / "results.json").exists():  # never beside another run's finished results
            write_json(output_dir() / FAILURE_FILE, record)
        print(f"netlab: job {hc.job.num} ({' '.join(hc.overrides.task)}) failed: {message}", file=sys.stderr,
              flush=True)
        return float("nan")


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


RESOLVERS = {"netlab_job": job_dirname, "netlab_threads_per_job": threads_per_job,
             "netlab_gpus_per_job": gpus_per_job, "netlab_ray_local": ray_local}
for _name, _resolver in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
