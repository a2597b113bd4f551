"""Datasets: verified IDX files, a seeded train/validation split, normalisation, augmentation."""

from .augment import Augment, affine, blotch, noise
from .files import DATASETS, default_root
from ..errors import DataError
from .pipeline import Loader, Splits, augment_offline, load, normalize

__all__ = ["Augment", "DATASETS", "DataError", "Loader", "Splits", "affine", "augment_offline", "blotch",
           "default_root", "load", "noise", "normalize"]
