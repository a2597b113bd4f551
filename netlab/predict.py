"""``python -m netlab.predict checkpoint=PATH image=FILE``: the class and probabilities that a
saved model gives a user's own digit image."""

from __future__ import annotations

import json

import hydra
import numpy as np
from omegaconf import DictConfig

from . import backend, losses
from .app import command, user_errors
from .checkpoint import load_model
from .config import PredictConfig, validate
from .data import DATASETS, normalize
from .data.io import load_digit
from .errors import CheckpointError, ConfigError


@user_errors
def predict(raw: DictConfig) -> dict:
    cfg = validate(raw, PredictConfig)
    xp = backend.namespace(cfg.backend.name)
    model, run_cfg, mean, std = load_model(cfg.checkpoint, xp, cfg.which)
    channels, height, width = (list(run_cfg.model.input_shape) + [0, 0])[:3]
    if channels != 1 or height != width:
        raise ConfigError(f"predict handles models of square grayscale images; this one takes "
                          f"{tuple(run_cfg.model.input_shape)}")
    digit = load_digit(cfg.image, size=height)
    x = normalize(backend.from_numpy(xp, digit[None, None, :, :]), mean, std)
    probs = backend.to_numpy(losses.softmax(model.forward(x)))[0]
    if not np.all(np.isfinite(probs)):
        raise CheckpointError(f"{cfg.checkpoint}: the model gives non-finite scores for {cfg.image}; its "
                              f"weights or normalisation are unusable")
    classes = DATASETS[run_cfg.data.name].classes
    order = probs.argsort()[::-1][: cfg.top]
    result = {"image": str(cfg.image), "class": classes[int(order[0])],
              "probabilities": {classes[int(i)]: round(float(probs[i]), 6) for i in order}}
    if cfg.json:
        print(json.dumps(result))
    else:
        print(f"{cfg.image}: {result['class']} ({100 * probs[order[0]]:.1f}%)")
        for i in order:
            print(f"  {classes[int(i)]:<12} {100 * probs[i]:6.2f}%")
    return result


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
