"""The one place that knows concrete array libraries.

Layers, losses, optimizers and augmentation receive an array namespace ``xp`` and use the
Python array API standard only. What the standard lacks lives here behind plain functions:
choosing a namespace, moving arrays to and from the host, random numbers, and the fast paths
that a benchmark showed pay (each with a generic twin the tests compare it with).
"""

from __future__ import annotations

import functools
import importlib
import math
import os

import numpy as np

from .errors import BackendError
from .registry import Registry

ARRAY_API_VERSION = "2024.12"


def _numpy():
    import array_api_compat.numpy as xp

    return xp


def _array_api_strict():
    strict = _import("array_api_strict", "pip install array-api-strict")
    strict.set_array_api_strict_flags(api_version=ARRAY_API_VERSION)
    return strict


def _torch():
    _import("torch", "pip install torch")
    import array_api_compat.torch as xp

    return xp


def _cupy():
    cupy = _import("cupy", "pip install 'netlab[cuda12]' (or netlab[cuda13]: pick the extra that "
                           "matches your CUDA version)")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise BackendError(
            f"backend 'cupy' needs an NVIDIA GPU with a working CUDA driver, and CuPy "
            f"could not reach one ({exc}). Use backend=numpy to train on the CPU."
        ) from None
    if count == 0:
        raise BackendError("backend 'cupy' needs an NVIDIA GPU, and none is visible "
                           "(check CUDA_VISIBLE_DEVICES). Use backend=numpy to train on the CPU.")
    import array_api_compat.cupy as xp

    return xp


# name -> a function that imports and returns the namespace (imports happen on first use only)
BACKENDS = Registry("backend", BackendError)
for _name, _load in (("numpy", _numpy), ("cupy", _cupy), ("array_api_strict", _array_api_strict),
                     ("torch", _torch)):
    BACKENDS.register(_name, _load)
NAMES = tuple(BACKENDS)


def namespace(name: str):
    """Return the array-API namespace called ``name`` ("numpy", "cupy", "array_api_strict", "torch")."""
    return BACKENDS.lookup(name)()


def _import(module: str, fix: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendError(f"backend {module!r} needs the package {module!r}, which is not "
                           f"installed. Install it with: {fix}") from None


@functools.lru_cache(maxsize=None)
def name_of(xp) -> str:
    """The backend name of a namespace returned by :func:`namespace` (worked out once per namespace)."""
    mod = xp.__name__
    for name in NAMES:
        if mod == name or mod.endswith("." + name):
            return name
    return mod


def device_name(xp) -> str:
    """A human-readable name of the device that arrays of ``xp`` live on."""
    name = name_of(xp)
    if name == "cupy":
        import cupy

        dev = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
        return f"cuda:{dev.id} {name.decode() if isinstance(name, bytes) else name}"
    return "cpu"


def to_numpy(a) -> np.ndarray:
    """Copy an array of any supported backend to a NumPy array on the host."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    if np.isscalar(a) or isinstance(a, (list, tuple)):
        return np.asarray(a)
    return np.from_dlpack(a)


def from_numpy(xp, a, dtype=None, device=None):
    """Copy a NumPy array (or anything NumPy reads) into namespace ``xp``."""
    a = np.asarray(a)
    if dtype is not None:
        a = a.astype(_numpy_dtype(xp, dtype), copy=False)
    if device is None:
        return xp.asarray(a)
    return xp.asarray(a, device=device)


def move(xp, a, dtype=None, device=None):
    """``a``, an array of any supported backend, as an array of namespace ``xp`` (cast to
    ``dtype`` and placed on ``device`` when given). Within one library nothing goes through the
    host (CuPy to CuPy stays on the GPU); across libraries the copy goes through NumPy."""
    from array_api_compat import array_namespace

    try:
        same = name_of(array_namespace(a)) == name_of(xp)
    except TypeError:  # not an array of any library array_api_compat knows
        same = False
    if not same:
        return from_numpy(xp, to_numpy(a), dtype=dtype, device=device)
    if dtype is not None and a.dtype != dtype:
        a = xp.astype(a, dtype)
    return xp.asarray(a) if device is None else xp.asarray(a, device=device)


def _numpy_dtype(xp, dtype):
    for name in ("float32", "float64", "int64", "int32", "uint8", "uint32", "int8", "bool"):
        if dtype == getattr(xp, name):
            return np.dtype(name)
    raise TypeError(f"no NumPy dtype for {dtype!r}")


_thread_limits = None
_threads: int | None = None


def set_threads(n: int | None) -> None:
    """Limit the CPU math libraries (BLAS, OpenMP, SciPy's FFT) to ``n`` threads; None lifts the limit."""
    global _thread_limits, _threads
    from threadpoolctl import threadpool_limits

    if _thread_limits is not None:
        _thread_limits.restore_original_limits()
        _thread_limits = None
    _threads = None if n is None else int(n)
    if n is not None:
        _thread_limits = threadpool_limits(limits=int(n))


def threads() -> int:
    """The CPU threads the math libraries may use: set_threads()'s limit, else every core this process may use."""
    return _threads or cpu_cores()


def cpu_cores() -> int:
    """The CPU cores this process may use (containers and taskset included where the OS says)."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows lack it
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# ------------------------------------------------------------------------------ fast paths
def matmul_into(xp, a, b, out=None):
    """``a @ b``, written into ``out`` when given and NumPy can (a fast path: no fresh
    allocation); every other case is the plain ``a @ b`` twin."""
    if isinstance(out, np.ndarray) and isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.matmul(a, b, out=out)
    return a @ b


def _scipy_fft():
    try:
        import scipy.fft
    except ImportError:  # SciPy is optional: every caller falls back to the array library's own FFT
        return None
    return scipy.fft


def rfftn(xp, x, s, axes):
    """``xp.fft.rfftn(x, s=s, axes=axes)``; on NumPy arrays SciPy's pocketfft in single
    precision on every thread (NumPy's FFT is single-threaded and took 4-8x longer on
    conv-sized batches, benchmarks/NOTES.md). The array library's FFT is the plain twin.
    (The FFT convolution's short transforms on NumPy are matrix products: netlab.nn.dft.)"""
    if _empty(x):
        return xp.zeros(_transformed(x.shape, s, axes, s[-1] // 2 + 1), device=x.device,
                        dtype=xp.complex64 if x.dtype == xp.float32 else xp.complex128)
    fft = _scipy_fft() if isinstance(x, np.ndarray) else None
    if fft is None:
        return xp.fft.rfftn(x, s=tuple(s), axes=tuple(axes))
    return fft.rfftn(x, s=tuple(s), axes=tuple(axes), workers=threads())


def _empty(x) -> bool:
    """Whether ``x`` has no elements: then the transforms give zeros of their shape here, since
    PyTorch's FFT refuses empty arrays (an empty batch through the FFT convolution)."""
    return math.prod(x.shape) == 0


def _transformed(shape, s, axes, last: int) -> tuple:
    """``shape`` with the transformed axes at lengths ``s``, the last of them at ``last``."""
    out = list(shape)
    for axis, n in zip(axes, s):
        out[axis] = n
    out[axes[-1]] = last
    return tuple(out)


def irfftn(xp, x, s, axes, keep=None):
    """``xp.fft.irfftn(x, s=s, axes=axes)``, with the fast path and twin of :func:`rfftn`;
    ``keep`` = (rows, columns), index sequences along the two axes, returns only those."""
    fft = _scipy_fft() if isinstance(x, np.ndarray) else None
    if _empty(x):
        full = xp.zeros(_transformed(x.shape, s, axes, s[-1]), device=x.device,
                        dtype=xp.float32 if x.dtype == xp.complex64 else xp.float64)
    elif fft is None:
        full = xp.fft.irfftn(x, s=tuple(s), axes=tuple(axes))
    else:
        full = fft.irfftn(x, s=tuple(s), axes=tuple(axes), workers=threads())
    if keep is None:
        return full
    for axis, index in zip(axes, keep):
        if isinstance(index, range) and index.step == 1:  # a crop: a slice, no index array on the device
            full = full[(slice(None),) * axis + (slice(index.start, index.stop), ...)]
        else:
            full = xp.take(full, xp.asarray(list(index), dtype=xp.int64, device=full.device), axis=axis)
    return full


class Scratch:
    """Work arrays that a layer reuses from step to step instead of allocating afresh.

    At batch 256 a convolution's column matrix is 80 MB, past glibc's 32 MB mmap limit, so a
    fresh one page-faults on every step (benchmarks/NOTES.md). ``empty()`` hands back the
    array it gave last time under the same name when namespace, shape and dtype still fit;
    ``Scratch(reuse=False)`` is the plain twin that always allocates. Contents are garbage
    until written, and an array is only valid until the next ``empty()`` under its name.
    """

    def __init__(self, reuse: bool = True):
        self.reuse = reuse
        self._arrays: dict = {}

    def empty(self, xp, name: str, shape, dtype, device=None):
        shape = tuple(shape)
        old = self._arrays.get(name)
        # a namespace change (model.to()) or a new batch size makes the old array useless
        if old is not None and old[0] is xp and tuple(old[1].shape) == shape and old[1].dtype == dtype:
            return old[1]
        array = xp.empty(shape, dtype=dtype, device=device)
        if self.reuse:
            self._arrays[name] = (xp, array)
        return array


def synchronize(xp) -> None:
    """Wait for the device to finish queued work (a no-op on the CPU), for honest timings."""
    if name_of(xp) == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


# --------------------------------------------------------------------------- random numbers
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class Generator:
    """Seeded, checkpointable random numbers on any array-API backend.

    The standard has no random numbers, so every draw is a keyed integer hash of the
    element indices: draw number ``counter`` of a generator seeded with ``seed`` is a pure
    function of ``(seed, counter, index)``. Streams are therefore identical on NumPy,
    array-api-strict, PyTorch and CuPy, are made on the array's device without host round
    trips, and the whole state is two integers (:meth:`state_dict`).
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.counter = 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.counter = int(state["counter"])

    def spawn(self, stream: int) -> "Generator":
        """An independent generator derived from this one's seed and ``stream``."""
        return Generator(_splitmix64(self.seed ^ _splitmix64(stream + 1)) & 0x7FFFFFFFFFFFFFFF)

    def bits(self, xp, shape, device=None):
        """Uniform 32-bit integers of ``shape`` (uint32; int64 holding 32 bits on torch and cupy)."""
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        key = _splitmix64(_splitmix64(self.seed) ^ self.counter)
        self.counter += 1
        k0, k1 = key & _M32, key >> 32
        # torch has no uint32 arithmetic, and how CuPy promotes uint32 against a Python int has
        # changed between versions; int64 with explicit masking gives the same bits everywhere.
        wide = name_of(xp) in ("torch", "cupy")
        dtype = xp.int64 if wide else xp.uint32
        h = xp.arange(n, dtype=dtype, device=device)
        h = _lowbias32(h ^ k0, wide)
        h = _lowbias32(h ^ k1, wide)
        return xp.reshape(h, shape)

    def random(self, xp, shape, dtype=None, device=None):
        """Uniform floats in the open interval (0, 1): the top 24 bits of a draw, centred in their
        cell. In float32, 2**24 - 0.5 rounds up to 2**24, so the last cell is kept below 1 (the
        largest float32 under 1): everything else is exact, and Box-Muller's log and a
        probability test ``u < p`` stay right at the edges."""
        dtype = xp.float32 if dtype is None else dtype
        top = xp.astype(self.bits(xp, shape, device) >> 8, dtype)
        return xp.minimum((top + 0.5) * (1.0 / (1 << 24)), 1.0 - 2.0 ** -24)

    def uniform(self, xp, low, high, shape, dtype=None, device=None):
        return low + (high - low) * self.random(xp, shape, dtype, device)

    def normal(self, xp, shape, dtype=None, device=None):
        """Standard normal floats (Box-Muller)."""
        u1 = self.random(xp, shape, dtype, device)
        u2 = self.random(xp, shape, dtype, device)
        return xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u2)

    def permutation(self, xp, n: int, device=None):
        """A random permutation of ``range(n)`` as int64 indices."""
        order = xp.argsort(self.bits(xp, (n,), device), stable=True)
        return xp.astype(order, xp.int64)


def _lowbias32(x, wide: bool):
    # Chris Wellons' lowbias32: a bijection on 32-bit integers with good avalanche.
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    if wide:
        x = x & _M32
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    if wide:
        x = x & _M32
    return x ^ (x >> 16)
