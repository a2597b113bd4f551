"""IDX files (the MNIST format), gzip or raw, read with full validation and bounded memory.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian int32 per
dimension, then the data in C order. The header is read first, so a small hostile file whose
header asks for gigabytes is refused before anything is decompressed or allocated.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_BYTES = 1 << 31  # 2 GiB of decompressed data per file: 35x the MNIST training images


def _open(path: Path):
    """A binary stream of ``path``'s contents, decompressing gzip (recognised by its magic bytes)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")
    f.seek(0)
    return f


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The decompressed contents of ``path`` (at most ``limit`` bytes, else an error)."""
    path = Path(path)
    try:
        with _open(path) as f:
            data = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip archive ({exc})") from None
    if len(data) > limit:
        raise DataError(f"{path}: more than {limit:,} bytes once decompressed; refusing to read it")
    return data


def header(data: bytes, name: str, ndim: int | None = None) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, shape, header length)`` from the first bytes of an IDX file, checked."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(f"{name}: bad magic number {data[:4].hex()} (expected 0000 then a type code "
                        f"and the number of dimensions); is this an IDX file?")
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise DataError(f"{name}: has {dims} dimensions, expected {ndim}")
    length = 4 + 4 * dims
    if len(data) < length:
        raise DataError(f"{name}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=dims, offset=4))
    return np.dtype(_TYPES[data[2]]), shape, length


def read_header(path: Path, ndim: int | None = None) -> tuple[np.dtype, tuple[int, ...], int]:
    """The header of the IDX file at ``path``, reading (and decompressing) only its first bytes."""
    path = Path(path)
    try:
        with _open(path) as f:
            head = f.read(4 + 4 * 255)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip archive ({exc})") from None
    return header(head, str(path), ndim)


def payload_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Bytes of data that a header promises (Python integers: no overflow for absurd headers)."""
    return math.prod(shape) * dtype.itemsize


def parse(data: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Decode IDX ``data``; ``ndim`` if given is the number of dimensions expected."""
    dtype, shape, length = header(data, name, ndim)
    expected = length + payload_bytes(dtype, shape)
    if len(data) != expected:
        raise DataError(f"{name}: header says shape {shape} ({expected:,} bytes with the header) "
                        f"but the file holds {len(data):,} bytes; it is truncated or corrupt")
    return np.frombuffer(data, dtype, offset=length).reshape(shape).astype(dtype.newbyteorder("="))


def write(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as IDX, gzip-compressed when the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = head + array.tobytes()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    os.replace(tmp, path)
