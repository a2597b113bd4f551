"""Shared fixtures: the ``xp`` namespace over every backend this machine has, a per-test
seeded generator, the small-data training config, and a command-line runner."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from netlab import backend
from netlab.config import compose, validate

# Tests never use the network: a download they trigger by mistake fails at once, in this process
# and in every command they start.
os.environ["NETLAB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "mnist-small"  # the first 600 training and 200 test digits of MNIST
# A training run on the fixture that takes a second or two.
SMALL = (f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.batch_size=32",
         "train.eval_every=5", "train.checkpoint_every=5", "train.eval_batch_size=100", "train.progress=false")


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


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's id: inputs do not depend on which tests ran before."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def small_config(*overrides):
    """The validated config of a small training run on the fixture, plus ``overrides``."""
    return validate(compose(*SMALL, *overrides))


def cli(*args, cwd, timeout=300):
    """Run ``python -m ARGS`` (a netlab command) as a user would; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


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
