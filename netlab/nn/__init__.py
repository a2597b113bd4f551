"""Layers with explicit forward and backward passes, written once for every array library."""

from .init import default_generator, manual_seed
from .layers import (GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d,
                     LeakyReLU, Linear, MaxPool2d, ReLU, Sigmoid, Tanh)
from .module import Module
from .sequential import Residual, Sequential

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "GELU", "GlobalAvgPool2d",
    "LeakyReLU", "Linear", "MaxPool2d", "Module", "ReLU", "Residual", "Sequential", "Sigmoid", "Tanh",
    "default_generator", "manual_seed",
]
