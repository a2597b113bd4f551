"""Shared fixtures: the ``xp`` namespace fixture over every backend this machine has."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from netlab import backend


def _gpu_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        backend.namespace("cupy")
    except backend.BackendError:
        return False
    return True


HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_GPU = _gpu_available()

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("array_api_strict", id="array_api_strict"),
    pytest.param("torch", id="torch", marks=pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")),
    pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="no GPU")]),
]


@pytest.fixture(params=BACKENDS)
def xp(request):
    return backend.namespace(request.param)


def pytest_collection_modifyitems(config, items):
    # Every test that runs on the cupy backend is a GPU test, so `-m gpu` selects all of them.
    for item in items:
        if "[cupy" in item.nodeid or "-cupy" in item.nodeid:
            item.add_marker(pytest.mark.gpu)


def as_xp(xp, a, dtype=None):
    """A NumPy array (or nested list) in namespace ``xp``, float64 by default for floats."""
    a = np.asarray(a)
    if dtype is None and a.dtype.kind == "f":
        dtype = xp.float64
    return backend.from_numpy(xp, a, dtype=dtype)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of scalar ``f`` at float64 ``x`` (modified in place, restored)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return grad
