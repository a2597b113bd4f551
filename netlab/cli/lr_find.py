"""``python -m netlab.lr_find [training overrides]`` (``netlab-lr-find``): the learning-rate range
test on a training run's model, data, optimizer and batch (``netlab.lr_range``); writes
``lr_find.png`` (loss against lr) and ``lr_find.json`` and prints the suggested lr."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .. import lr_range
from ..config import LrFindConfig, validate
from ..errors import ConfigError
from ..outputs import write_json
from ..plots import save
from ..training import Trainer
from . import CONF
from .exits import command, user_errors

log = logging.getLogger("netlab.lr_find")


@user_errors
def lr_find(raw: DictConfig) -> dict:
    cfg = validate(raw, LrFindConfig)
    rt = cfg.lr_find
    out = Path(rt.out) if rt.out else Path("outputs/lr_find") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S.%f")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"lr_find.out={out} is a file; the range test writes into a folder")
    cfg.train.progress = False
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's run folder: nothing is kept from it
        trainer = Trainer(cfg, Path(scratch), callbacks=[])
        test = lr_range.run(trainer, rt.start, rt.end, rt.steps)
    report = {"model": cfg.model.name, "optimizer": cfg.optimizer.name, "batch_size": cfg.train.batch_size,
              "dataset": cfg.data.name, **test.as_dict()}
    write_json(out / "lr_find.json", report)
    save(lr_range.figure(test, f"{cfg.model.name}, {cfg.optimizer.name}, batch {cfg.train.batch_size}: "
                               f"suggested lr {test.steepest:.2g}"), out / "lr_find.png")
    print(f"suggested lr {test.steepest:.3g} (where the smoothed training loss falls fastest; the lowest loss "
          f"/ 10 is {test.minimum_over_10:.3g}); {len(test.lrs)} steps, {test.stopped}. "
          f"Use it as optimizer.lr (with the one-cycle schedule, its peak). Wrote {out / 'lr_find.png'}")
    return report


@command(LrFindConfig)
@hydra.main(version_base="1.3", config_path=CONF, config_name="lr_find")
def main(cfg: DictConfig) -> None:
    lr_find(cfg)
