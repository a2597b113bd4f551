"""Datasets: verified files, a seeded train/validation split, normalisation, augmentation.

The modules: ``datasets`` (the table of datasets and reading a split), ``download`` (where
files live, fetching and checking them), ``idx`` (the IDX format), ``images`` (a user's own
image, prepared as the dataset's), ``pipeline`` (splits, normalisation, batches) and
``augment``. The names below are imported on first use, so that the configuration schema can
read the dataset table without loading the rest.
"""

import importlib

_HOMES = {
    "Augment": "augment", "affine": "augment", "blotch": "augment", "noise": "augment",
    "DATASETS": "datasets", "load_split": "datasets", "default_root": "download",
    "Loader": "pipeline", "Splits": "pipeline", "augment_offline": "pipeline", "load": "pipeline",
    "normalize": "pipeline", "DataError": "..errors",
}
__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        home = _HOMES[name]
        return getattr(importlib.import_module(home if home.startswith("..") else f".{home}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
