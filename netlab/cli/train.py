"""``python -m netlab.train`` (``netlab-train``): train one model, or sweep with ``-m``.

The loop is :class:`netlab.training.Trainer`; this command only wires Hydra to it.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from .. import resume
from ..config import Config
from ..errors import NetlabError
from ..outputs import discard_if_bare, output_dir
from ..training import Trainer
from . import CONF
from .exits import command, user_errors
from .guard import run_config


@user_errors
def train(cfg: DictConfig) -> float:
    """Train with ``cfg`` into Hydra's output folder; return the final validation accuracy
    (what sweepers optimise)."""
    out = output_dir()
    try:
        # train.resume=auto (sweep=slurm): a requeued job continues its own folder, a first start starts
        checked = run_config(resume.settle_auto(cfg), list(HydraConfig.get().overrides.task))
        # paths the user typed are relative to where they typed them, also with hydra.job.chdir=true
        for group, key in (("data", "root"), ("train", "resume"), ("train", "init_from")):
            value = getattr(getattr(checked, group), key)
            if value and value not in ("latest", resume.AUTO):
                setattr(getattr(checked, group), key, to_absolute_path(value))
        trainer = Trainer(checked, out)
        if checked.train.resume:
            trainer.load(checked.train.resume)
        return trainer.fit()["val_accuracy"]
    except NetlabError:
        if HydraConfig.get().mode == RunMode.RUN:  # a sweep keeps its failed job's folder
            discard_if_bare(out, f"{HydraConfig.get().job.name}.log")
        raise


@command(Config)
@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> float:
    return train(cfg)
