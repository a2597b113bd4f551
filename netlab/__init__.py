"""netlab: a from-scratch CNN lab for MNIST-scale vision, on any array-API backend."""

from . import backend, losses, nn, optim

__version__ = "0.1.0"
__all__ = ["backend", "losses", "nn", "optim", "__version__"]
