"""IDX files (the MNIST format), gzip or raw, read with full validation.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian int32 per
dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The decompressed contents of ``path`` (gzip recognised by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip archive ({exc})") from None
    return raw


def parse(data: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Decode IDX ``data``; ``ndim`` if given is the number of dimensions expected."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(f"{name}: bad magic number {data[:4].hex()} (expected 0000 then a type code "
                        f"and the number of dimensions); is this an IDX file?")
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise DataError(f"{name}: has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{name}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=dims, offset=4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{name}: header says shape {shape} ({expected} bytes with the header) "
                        f"but the file holds {len(data)} bytes; it is truncated or corrupt")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as IDX, gzip-compressed when the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    os.replace(tmp, path)
