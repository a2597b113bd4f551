"""``python -m netlab.predict checkpoint=RUN_DIR image=FILE|FOLDER|GLOB``: the class and
probabilities that a saved model gives each of a user's own images."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from .. import saved
from ..config import PredictConfig, validate
from ..errors import ConfigError, DataError
from ..inference import Predictor
from . import CONF
from .exits import command, shown, user_errors

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
    predictor = Predictor(saved.open_for(cfg))
    if cfg.top > len(predictor.classes):
        raise ConfigError(f"invalid setting: top must be at most the model's {len(predictor.classes)} classes, "
                          f"got {cfg.top}")
    answers, failed = [], []
    for path in images_of(cfg.image):
        try:
            image = predictor.prepare(path)
        except DataError as exc:
            failed.append(str(path))
            if cfg.json:
                print(json.dumps({"image": str(path), "error": str(exc)}), flush=True)
            print(f"netlab: {shown(exc)}", file=sys.stderr, flush=True)
            continue
        answer = {"image": str(path), **predictor.answer(image, cfg.top)}
        answers.append(answer)
        if cfg.json:
            print(json.dumps(answer), flush=True)
        else:
            (first, p), *rest = answer["probabilities"].items()
            print(f"{shown(path)}: {first} ({100 * p:.1f}%)  " + "  ".join(f"{c} {100 * q:.2f}%" for c, q in rest),
                  flush=True)
    if failed:
        raise DataError(f"{len(failed)} of {len(failed) + len(answers)} images could not be read "
                        f"({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); the others were answered")
    return answers


@command(PredictConfig)
@hydra.main(version_base="1.3", config_path=CONF, config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)
