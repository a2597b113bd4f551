"""Datasets: verified files, a seeded train/validation split, normalisation, augmentation.

The modules: ``datasets`` (the table of datasets, their formats and reading a split),
``download`` (where files live, fetching, unpacking and checking them), ``idx`` (the IDX
format), ``folder`` (a user's images, one subfolder per class), ``images`` (a user's own image,
prepared as the dataset's), ``pipeline`` (splits, per-channel normalisation, batches) and
``augment``. The names below are imported on first use, so that the configuration schema can
read the dataset table without loading the rest.
"""

import importlib

_HOMES = {
    "Augment": "augment", "affine": "augment", "blotch": "augment", "noise": "augment",
    "DATASETS": "datasets", "load_split": "datasets", "default_root": "download",
    "Loader": "pipeline", "Splits": "pipeline", "augment_offline": "pipeline", "load": "pipeline",
    "normalize": "pipeline", "per_channel": "pipeline", "statistics": "pipeline",
    "input_description": "datasets", "DataError": "..errors",
}
__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        home = _HOMES[name]
        return getattr(importlib.import_module(home if home.startswith("..") else f".{home}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
