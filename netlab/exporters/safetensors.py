"""safetensors weights: writing a trained model's, and reading anyone's as data.

The file holds the weights under PyTorch's ``state_dict`` names (so ``torch.nn.Sequential``
loads them strictly), with the normalisation and the model file as metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import nn
from ..errors import CheckpointError

SUFFIX = ".safetensors"
FORMAT = "netlab-weights-1"


def write(model: nn.Sequential, mean: float, std: float, input_shape, path: Path, meta: dict) -> Path:
    """Write the weights under PyTorch's state_dict names, with normalisation and model file as metadata."""
    from safetensors.numpy import save

    from ..outputs import atomic_write

    tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "mean": repr(float(mean)), "std": repr(float(std)),
                **{k: str(v) for k, v in meta.items()}}
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))


MAX_HEADER_BYTES = 1 << 24
MAX_WEIGHT_BYTES = 1 << 31


def read_safetensors(path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file, read as data: the header's length and every
    tensor's size are checked against the file before anything is loaded."""
    path = Path(path)
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror})") from None
    with raw:
        size = path.stat().st_size
        head = raw.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors file (too short)")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path} is not a safetensors file (its header claims {n:,} bytes)")
        try:
            header = json.loads(raw.read(n))
        except ValueError:
            raise CheckpointError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (its header is not a mapping)")
    total = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            total += int(end) - int(start)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {key!r} has no valid data_offsets") from None
    if total > min(MAX_WEIGHT_BYTES, size):
        raise CheckpointError(f"{path}: its tensors claim {total:,} bytes, more than the file holds")
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{path}: damaged safetensors file ({type(exc).__name__}: {exc})") from None
    for key, a in tensors.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
    return tensors, dict(header.get("__metadata__") or {})
