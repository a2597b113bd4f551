"""Namespaces, host transfers, the counter-based generator and the fast-path helpers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from netlab import backend
from conftest import as_xp


def test_generator_streams_are_identical_on_every_backend(xp):
    """The same seed gives the same numbers on every backend: compared with numbers fixed here
    once (so the numpy case is not compared with itself)."""
    gen = backend.Generator(42)
    bits = backend.to_numpy(gen.bits(xp, (6,))).astype(np.int64)
    np.testing.assert_array_equal(bits, GOLDEN_BITS)
    gen = backend.Generator(42)
    np_xp = backend.namespace("numpy")
    ref = backend.Generator(42)
    for draw in ("random", "normal"):
        a = backend.to_numpy(getattr(ref, draw)(np_xp, (3, 50), dtype=np_xp.float64))
        b = backend.to_numpy(getattr(gen, draw)(xp, (3, 50), dtype=xp.float64))
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(backend.to_numpy(ref.permutation(np_xp, 100)),
                                  backend.to_numpy(gen.permutation(xp, 100)))


# Generator(42).bits(xp, (6,)) as first computed; a change here changes every run's randomness.
GOLDEN_BITS = [705309293, 2795069350, 10914375, 1338918925, 448503311, 3382254282]


def test_generator_statistics_and_state():
    xp = backend.namespace("numpy")
    gen = backend.Generator(1)
    u = gen.random(xp, (200_000,), dtype=xp.float64)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.001
    z = gen.normal(xp, (200_000,), dtype=xp.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert sorted(gen.permutation(xp, 1000).tolist()) == list(range(1000))
    state = gen.state_dict()
    a = gen.random(xp, (10,))
    gen.load_state_dict(state)
    np.testing.assert_array_equal(a, gen.random(xp, (10,)))
    assert not np.array_equal(a, gen.random(xp, (10,)))
    assert not np.array_equal(backend.Generator(1).random(xp, (10,)), backend.Generator(2).random(xp, (10,)))
    assert not np.array_equal(gen.spawn(0).random(xp, (10,)), gen.spawn(1).random(xp, (10,)))


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(backend.BackendError, match="unknown backend 'jax'.*numpy"):
        backend.namespace("jax")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_missing_cupy_names_the_fix():
    with pytest.raises(backend.BackendError, match=r"netlab\[cuda12\]"):
        backend.namespace("cupy")


def test_to_numpy_round_trip(xp):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = backend.from_numpy(xp, a)
    assert backend.to_numpy(b).dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(b), a)
    assert backend.name_of(xp) in backend.NAMES


def test_matmul_into_matches_a_float64_reference(xp, rng):
    a_np, b_np = rng.standard_normal((5, 3)), rng.standard_normal((3, 7))
    expected = a_np @ b_np  # NumPy, computed apart from the namespace under test
    a, b = as_xp(xp, a_np), as_xp(xp, b_np)
    out = xp.empty((5, 7), dtype=xp.float64)
    np.testing.assert_allclose(backend.to_numpy(backend.matmul_into(xp, a, b, out)), expected, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(backend.matmul_into(xp, a, b)), expected, rtol=1e-12)
    if backend.name_of(xp) == "numpy":  # the fast path really writes into the given array
        assert backend.matmul_into(xp, a, b, out) is out


def test_scratch_reuses_only_what_fits():
    xp = backend.namespace("numpy")
    strict = backend.namespace("array_api_strict")
    s = backend.Scratch()
    a = s.empty(xp, "cols", (2, 3), xp.float32)
    assert s.empty(xp, "cols", (2, 3), xp.float32) is a
    assert s.empty(xp, "cols", (2, 4), xp.float32) is not a
    assert s.empty(xp, "cols", (2, 4), xp.float64).dtype == xp.float64
    assert s.empty(strict, "cols", (2, 4), strict.float64) is not s.empty(xp, "cols", (2, 4), xp.float64)
    plain = backend.Scratch(reuse=False)
    assert plain.empty(xp, "cols", (2, 3), xp.float32) is not plain.empty(xp, "cols", (2, 3), xp.float32)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fft_fast_path_matches_its_twin_and_keeps_precision(xp, rng, dtype):
    """backend.rfftn/irfftn (SciPy on NumPy arrays) against the namespace's own FFT and a
    NumPy float64 reference, along the leading axes with zero-padding, as the conv uses them."""
    x_np = rng.standard_normal((5, 6, 3, 4)).astype(dtype)
    x = as_xp(xp, x_np) if dtype == "float64" else backend.from_numpy(xp, x_np)
    spectrum = backend.rfftn(xp, x, (8, 9), (0, 1))
    np.testing.assert_allclose(backend.to_numpy(spectrum), np.fft.rfftn(x_np.astype(np.float64), s=(8, 9), axes=(0, 1)),
                               rtol=0, atol=1e-4 if dtype == "float32" else 1e-12)
    twin = xp.fft.rfftn(x, s=(8, 9), axes=(0, 1))
    np.testing.assert_allclose(backend.to_numpy(spectrum), backend.to_numpy(twin), rtol=0,
                               atol=1e-5 if dtype == "float32" else 1e-12)
    assert spectrum.dtype == twin.dtype == (xp.complex64 if dtype == "float32" else xp.complex128)
    back = backend.irfftn(xp, spectrum, (8, 9), (0, 1))
    assert back.dtype == getattr(xp, dtype)
    np.testing.assert_allclose(backend.to_numpy(back)[:5, :6], x_np, rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_allclose(backend.to_numpy(back), backend.to_numpy(xp.fft.irfftn(twin, s=(8, 9), axes=(0, 1))),
                               rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="SciPy not installed")
def test_fft_fast_path_is_taken_on_numpy_with_the_thread_setting(monkeypatch):
    import scipy.fft

    seen = []
    real = scipy.fft.rfftn
    monkeypatch.setattr(scipy.fft, "rfftn", lambda *a, **k: seen.append(k["workers"]) or real(*a, **k))
    xp = backend.namespace("numpy")
    backend.set_threads(1)
    try:
        backend.rfftn(xp, np.ones((4, 4), np.float32), (8, 8), (0, 1))
    finally:
        backend.set_threads(None)
    backend.rfftn(xp, np.ones((4, 4), np.float32), (8, 8), (0, 1))
    assert seen == [1, backend.threads()] and backend.threads() >= 1


def test_kept_rows_and_columns_of_the_inverse_in_every_namespace(xp, rng):
    """``keep`` in the twins (the namespace's FFT, then take): the rows and columns asked for."""
    x = as_xp(xp, rng.standard_normal((5, 6, 3)))
    spectrum = xp.fft.rfftn(x, s=(8, 9), axes=(0, 1))
    full = backend.to_numpy(xp.fft.irfftn(spectrum, s=(8, 9), axes=(0, 1)))
    rows, cols = [6, 7, 0, 1], [0, 8]
    kept = backend.irfftn(xp, spectrum, (8, 9), (0, 1), keep=(rows, cols))
    np.testing.assert_allclose(backend.to_numpy(kept), full[rows][:, cols], rtol=0, atol=1e-12)
    cropped = backend.irfftn(xp, spectrum, (8, 9), (0, 1), keep=(range(1, 6), range(7)))  # a crop: sliced
    np.testing.assert_allclose(backend.to_numpy(cropped), full[1:6, :7], rtol=0, atol=1e-12)


def test_cpu_cores_without_sched_getaffinity(monkeypatch):
    """macOS and Windows have no os.sched_getaffinity: the thread count falls back to cpu_count."""
    import os

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert backend.cpu_cores() == 3 and backend.threads() == 3
    backend.set_threads(2)
    try:
        assert backend.threads() == 2
    finally:
        backend.set_threads(None)
