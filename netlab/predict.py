"""``python -m netlab.predict checkpoint=RUN_DIR image=FILE|FOLDER|GLOB``: the class and
probabilities that a saved model gives each of a user's own digit images."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig

from . import backend, losses
from .app import command, user_errors
from .checkpoint import load_model
from .config import PredictConfig, validate
from .data import DATASETS, normalize
from .data.io import load_digit
from .errors import CheckpointError, ConfigError, DataError


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def images_of(spec) -> list[Path]:
    """The files that ``image=`` names: a file, a folder (its images, sorted), a glob, or a list of those."""
    entries = list(spec) if isinstance(spec, (list, tuple, ListConfig)) else [spec]
    found = []
    for entry in entries:
        path = Path(str(entry)).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif not path.exists() and any(c in str(entry) for c in "*?["):
            found += sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        else:
            found.append(path)  # a missing file is reported with the others
    if not found:
        raise DataError(f"no images found in image={spec} (a file, a folder of PNG/JPEG/... files, or a glob "
                        f"such as 'digits/*.png')")
    return found


@user_errors
def predict(raw: DictConfig) -> list[dict]:
    """One answer per image, printed as it comes (a line each with json=true); an image that
    cannot be read gets its own error line, the others are still answered, and the exit
    status is then 2."""
    cfg = validate(raw, PredictConfig)
    xp = backend.namespace(cfg.backend.name)
    model, run_cfg, mean, std = load_model(cfg.checkpoint, xp, cfg.which, model=cfg.model, mean=cfg.mean,
                                          std=cfg.std, conv=cfg.backend.conv)
    if mean is None or std is None:
        raise ConfigError(f"{cfg.checkpoint} does not say how its images were normalised; give mean= and std= "
                          f"(the training images' pixel mean and standard deviation, in [0, 1] units)")
    channels, height, width = (list(run_cfg.model.input_shape) + [0, 0])[:3]
    if channels != 1 or height != width:
        raise ConfigError(f"predict handles models of square grayscale images; this one takes "
                          f"{tuple(run_cfg.model.input_shape)}")
    classes = DATASETS[run_cfg.data.name].classes
    answers, failed = [], []
    for path in images_of(cfg.image):
        try:
            digit = load_digit(path, size=height)
        except DataError as exc:
            failed.append(str(path))
            if cfg.json:
                print(json.dumps({"image": str(path), "error": str(exc)}), flush=True)
            print(f"netlab: {exc}", file=sys.stderr, flush=True)
            continue
        x = normalize(backend.from_numpy(xp, digit[None, None, :, :]), mean, std)
        probs = backend.to_numpy(losses.softmax(model.forward(x)))[0]
        if not np.all(np.isfinite(probs)):
            raise CheckpointError(f"{cfg.checkpoint}: the model gives non-finite scores for {path}; its "
                                  f"weights or normalisation are unusable")
        order = probs.argsort()[::-1][: cfg.top]
        answer = {"image": str(path), "class": classes[int(order[0])],
                  "probabilities": {classes[int(i)]: round(float(probs[i]), 6) for i in order}}
        answers.append(answer)
        if cfg.json:
            print(json.dumps(answer), flush=True)
        else:
            print(f"{path}: {answer['class']} ({100 * probs[order[0]]:.1f}%)  " + "  ".join(
                f"{classes[int(i)]} {100 * probs[i]:.2f}%" for i in order[1:]), flush=True)
    if failed:
        raise DataError(f"{len(failed)} of {len(failed) + len(answers)} images could not be read "
                        f"({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); the others were answered")
    return answers


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
