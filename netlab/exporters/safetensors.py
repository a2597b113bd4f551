"""safetensors weights: writing a trained model's, and reading anyone's as data.

The file holds the weights under PyTorch's ``state_dict`` names (so ``torch.nn.Sequential``
loads them strictly), with the normalisation (per channel for colour models: a JSON list) and
the model file as metadata.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .. import nn
from ..errors import CheckpointError

SUFFIX = ".safetensors"
FORMAT = "netlab-weights-1"


def _statistic(value) -> str:
    """A normalisation statistic as metadata text: ``0.1307``, or ``[0.49, 0.48, 0.45]`` per channel."""
    if isinstance(value, (tuple, list)):
        return json.dumps([float(v) for v in value])
    return repr(float(value))


def write(model: nn.Sequential, mean, std, input_shape, path: Path, meta: dict) -> Path:
    """Write the weights under PyTorch's state_dict names, with normalisation (a number, or a
    JSON list of one number per channel) and model file as metadata."""
    from safetensors.numpy import save

    from ..outputs import atomic_write

    # np.array, not np.ascontiguousarray: that makes a 0-d buffer (batch norm's count) 1-d
    tensors = {k: np.array(v, order="C") for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "mean": _statistic(mean), "std": _statistic(std),
                "input_shape": json.dumps([int(d) for d in input_shape]), **{k: str(v) for k, v in meta.items()}}
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))


MAX_HEADER_BYTES = 1 << 24
MAX_WEIGHT_BYTES = 1 << 31
# safetensors dtype -> how its bytes read as NumPy (little-endian); BF16 is widened to float32
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}


def _unique(pairs) -> dict:
    """A JSON object whose keys are distinct (a tensor named twice would be read as one or the other)."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"names {next(k for k in keys if keys.count(k) > 1)!r} twice")
    return dict(pairs)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors(path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file (netlab's or any program's), read as data:
    the header (JSON) is bounded and checked first, every tensor's dtype, shape and byte range
    against each other and the file, and only then are the bytes read. bfloat16 tensors, which
    NumPy has no type for, come back as float32 (exactly: a bfloat16 is a float32's top half)."""
    path = Path(path)
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror})") from None
    with raw:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors file (too short)")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path} is not a safetensors file (its header claims {n:,} bytes)")
        try:
            header = json.loads(raw.read(n), object_pairs_hook=_unique)
        except ValueError as exc:
            why = str(exc) if str(exc).endswith(" twice") else "is not JSON"
            raise CheckpointError(f"{path} is not a safetensors file (its header {why})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path} is not a safetensors file (its header is not a mapping)")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise CheckpointError(f"{path}: its metadata is not a mapping of text")
        data_size, plan, total = size - 8 - n, {}, 0
        for key, info in header.items():
            try:
                dtype, shape, (start, end) = DTYPES[info["dtype"]], list(info["shape"]), info["data_offsets"]
                if not isinstance(info["shape"], list) or not all(_whole(v) for v in (*shape, start, end)):
                    raise TypeError  # 2.5, true or "2" are not sizes (int() would make them 2, 1 and 2)
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{path}: tensor {key!r} has no valid dtype, shape and data_offsets "
                                      f"(dtypes netlab reads: {', '.join(DTYPES)})") from None
            itemsize = np.dtype(dtype).itemsize
            if min(shape, default=0) < 0 or not 0 <= start <= end <= data_size \
                    or end - start != math.prod(shape) * itemsize:
                raise CheckpointError(f"{path}: tensor {key!r} claims shape {shape} at bytes {start}-{end}, which "
                                      f"does not fit the file; it is damaged")
            total += end - start
            plan[key] = (dtype, info["dtype"], shape, start)
        ranges = sorted((start, start + math.prod(shape) * np.dtype(dtype).itemsize, key)
                        for key, (dtype, _, shape, start) in plan.items())
        at = 0
        for start, end, key in ranges:  # the tensors tile the data exactly, as the format requires
            if start < at:
                raise CheckpointError(f"{path}: tensor {key!r}'s bytes overlap another tensor's; it is damaged")
            if start > at:
                break
            at = end
        if at != data_size:
            raise CheckpointError(f"{path}: {data_size - at:,} of its {data_size:,} data bytes are bytes that no "
                                  f"tensor claims (or come after a gap); it is damaged")
        if total > MAX_WEIGHT_BYTES:
            raise CheckpointError(f"{path}: its tensors claim {total:,} bytes; refusing more than {MAX_WEIGHT_BYTES:,}")
        tensors = {}
        for key, (dtype, kind, shape, start) in plan.items():
            raw.seek(8 + n + start)
            count = math.prod(shape)
            a = np.frombuffer(raw.read(count * np.dtype(dtype).itemsize), dtype=dtype, count=count).reshape(shape)
            if kind == "BF16":
                a = (a.astype(np.uint32) << 16).view(np.float32)
            tensors[key] = a.astype(a.dtype.newbyteorder("="))
    for key, a in tensors.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
    return tensors, metadata
