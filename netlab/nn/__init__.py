"""Layers with explicit forward and backward passes, written once for every array library."""

from .init import default_generator, manual_seed
from .layers import AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from .module import Module
from .sequential import Sequential

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Linear",
    "MaxPool2d", "Module", "ReLU", "Sequential", "default_generator", "manual_seed",
]
