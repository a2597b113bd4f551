"""``python -m netlab.train`` (``netlab-train``): train one model, or sweep with ``-m``.

The loop is :class:`netlab.training.Trainer`; this command only wires Hydra to it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .app import command, user_errors
from .config import validate
from .outputs import output_dir
from .training import Trainer


@user_errors
def train(cfg: DictConfig) -> float:
    """Train with ``cfg`` into Hydra's output folder; return the final validation accuracy
    (what sweepers optimise)."""
    checked = validate(cfg)
    trainer = Trainer(checked, output_dir())
    if checked.train.resume:
        trainer.load(checked.train.resume)
    return trainer.fit()["val_accuracy"]


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
