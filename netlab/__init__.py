"""netlab: a from-scratch CNN lab for MNIST-scale vision, on any array-API backend."""

from importlib import metadata as _metadata

from . import backend, losses, nn, optim

try:
    __version__ = _metadata.version("netlab")  # the one version number is pyproject.toml's
except _metadata.PackageNotFoundError:  # running from a clone that was never installed
    __version__ = "unknown"
__all__ = ["Model", "Run", "backend", "fit", "load", "losses", "nn", "optim", "__version__"]


def __getattr__(name):
    """The Python API (``netlab.fit``, ``netlab.load``, ``Model``, ``Run``: ``netlab/api.py``),
    imported on first use so that ``import netlab`` stays light."""
    if name in ("Model", "Run", "fit", "load"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'netlab' has no attribute {name!r}")
