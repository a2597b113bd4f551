"""Refusing a run before anything is written: a Hydra callback (``conf/config.yaml``) that runs
after Hydra composes the config and before it creates the output folder or writes its record
(``.hydra/``) there.

For one run it checks the settings (netlab's schema), continues ``train.resume=RUN`` in RUN's
own folder with RUN's own settings, and takes the output folder (its lock, and the refusal of
a folder that holds another run). For a sweep it refuses a sweep folder that already holds
finished jobs. A refused command leaves every file as it was.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf, open_dict, read_write

from .. import resume
from ..config import compose, validate
from ..errors import ConfigError, NetlabError
from ..outputs import RunFolder
from .exits import EXIT_BAD_INPUT, fail


def task_part(config):
    """The config without Hydra's own node (what the task function receives)."""
    return OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])


def run_config(config, overrides: list[str]):
    """The checked settings of this run: the composed ones, or for ``train.resume=RUN`` the
    settings RUN was started with and ``overrides`` (this command's) on top."""
    spec = OmegaConf.select(config, "train.resume")
    if not spec:
        return validate(task_part(config))
    folder = resume.run_folder(spec)
    return validate(task_part(compose(*resume.continued_overrides(folder, overrides))))


class RunGuard(Callback):
    def on_run_start(self, config, **kwargs) -> None:
        _reported(lambda: _prepare_run(config), config)

    def on_multirun_start(self, config, **kwargs) -> None:
        _reported(lambda: _prepare_sweep(config), config)


def _prepare_run(config) -> None:
    HydraConfig.instance().set_config(config)  # the config's ${hydra:...} interpolations resolve against it
    overrides = list(config.hydra.overrides.task)
    run_config(config, overrides)
    spec, continuing = OmegaConf.select(config, "train.resume"), None
    if spec:
        continuing = resume.run_folder(spec)
        if not any(o.lstrip("+").startswith("hydra.run.dir=") for o in overrides):
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.run.dir = str(continuing.resolve())  # the run goes on in its own folder
                config.hydra.output_subdir = None  # and its record (.hydra/) stays the one it was started with
    RunFolder.claim(Path(str(OmegaConf.select(config, "hydra.run.dir"))), continuing)


def _prepare_sweep(config) -> None:
    root = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file, not a folder; give the sweep a folder of its own (hydra.sweep.dir=...)")
    done = sorted(p.parent.name for p in root.glob("*/results.json")) if root.is_dir() else []
    if done:
        raise ConfigError(f"{root} already holds a sweep ({len(done)} finished jobs, e.g. {done[0]}); netlab does "
                          f"not write over it. Give this sweep its own folder (hydra.sweep.dir=...)")


def _reported(prepare, config) -> None:
    """Hydra turns a callback's exception into a warning and goes on: a refusal ends the command
    here instead (with its traceback and status 1 under debug=true), and a crash shows its traceback."""
    try:
        prepare()
    except NetlabError as exc:
        if OmegaConf.select(config, "debug") or OmegaConf.select(config, "hydra.verbose"):
            traceback.print_exc()
            raise SystemExit(1) from None
        fail(str(exc), EXIT_BAD_INPUT)
    except Exception:
        traceback.print_exc()
        raise SystemExit(1) from None
