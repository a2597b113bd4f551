"""Taking a trained model out of Python: ONNX graphs and safetensors weights.

Both start from a checkpoint's model (in eval mode) and its normalisation. The ONNX graph
takes what ``predict`` feeds the model, float32 images ``(N, 1, 28, 28)`` with pixels in
[0, 1], normalises them in its first two nodes, and gives ``logits`` and ``probabilities``;
the batch axis is dynamic. The safetensors file holds the weights under PyTorch's
``state_dict`` names, with the normalisation and the model file as metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import backend, nn
from .errors import CheckpointError, ConfigError
from .registry import Registry

OPSET = 17  # ONNX Runtime 1.14+ and every current converter read it
EXPORTERS = Registry("export format")
SAFETENSORS_FORMAT = "netlab-weights-1"


class _Graph:
    """The nodes and constants of an ONNX graph as it is built, layer by layer."""

    def __init__(self, helper):
        self.helper, self.nodes, self.initializer = helper, [], []

    def const(self, name: str, array) -> str:
        array = np.asarray(array, dtype=np.float32)
        self.initializer.append(self.helper.make_tensor(name, 1, array.shape, array.ravel().tolist()))
        return name

    def node(self, op: str, inputs: list, out: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layer(self, layer, index: int, x: str) -> str:
        """The nodes of ``layer`` reading tensor ``x``; returns the name of its output."""
        name, out = f"l{index}", f"l{index}_out"
        state = {k: backend.to_numpy(v) for k, v in layer.state_dict().items()}
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            inputs = [x, self.const(f"{name}.weight", state["weight"])]
            if "bias" in state:
                inputs.append(self.const(f"{name}.bias", state["bias"]))
            if isinstance(layer, nn.Linear):
                return self.node("Gemm", inputs, out, transB=1)
            (ph, pw), (sh, sw) = layer.padding, layer.stride
            return self.node("Conv", inputs, out, kernel_shape=list(layer.kernel_size), strides=[sh, sw],
                             pads=[ph, pw, ph, pw])
        if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            (ph, pw), (sh, sw) = layer.padding, layer.stride
            op, extra = ("MaxPool", {}) if isinstance(layer, nn.MaxPool2d) else \
                ("AveragePool", {"count_include_pad": 1})  # netlab's mean counts the padding, as PyTorch's
            return self.node(op, [x], out, kernel_shape=list(layer.kernel_size), strides=[sh, sw],
                             pads=[ph, pw, ph, pw], **extra)
        if isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm1d)):
            inputs = [x] + [self.const(f"{name}.{k}", state[k])
                            for k in ("weight", "bias", "running_mean", "running_var")]
            return self.node("BatchNormalization", inputs, out, epsilon=float(layer.eps))
        if isinstance(layer, nn.ReLU):
            return self.node("Relu", [x], out)
        if isinstance(layer, nn.Flatten):
            return self.node("Flatten", [x], out, axis=1)
        if isinstance(layer, nn.Dropout):
            return x  # identity in eval mode
        raise ConfigError(f"ONNX export does not know layer {type(layer).__name__}")


def to_onnx(model: nn.Sequential, mean: float, std: float, input_shape, path: Path, meta: dict) -> Path:
    """Write ``model`` (eval mode) as an ONNX graph with its normalisation folded in front."""
    import onnx
    from onnx import TensorProto, helper

    from .outputs import atomic_write

    g = _Graph(helper)
    x = g.node("Div", [g.node("Sub", ["image", g.const("mean", mean)], "centred"), g.const("std", std)], "normalised")
    for i, layer in enumerate(model):
        x = g.layer(layer, i, x)
    g.node("Identity", [x], "logits")
    g.node("Softmax", ["logits"], "probabilities", axis=1)
    classes = int(meta.get("num_classes", 10))
    graph = helper.make_graph(
        g.nodes, "netlab", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", classes]) for o in ("logits", "probabilities")],
        g.initializer)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="netlab")
    for key, value in meta.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(onnx_model)
    return atomic_write(path, lambda f: f.write(onnx_model.SerializeToString()))


def to_safetensors(model: nn.Sequential, mean: float, std: float, input_shape, path: Path, meta: dict) -> Path:
    """Write the weights under PyTorch's state_dict names, with normalisation and model file as metadata."""
    from safetensors.numpy import save

    from .outputs import atomic_write

    tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    metadata = {"format": SAFETENSORS_FORMAT, "mean": repr(float(mean)), "std": repr(float(std)),
                **{k: str(v) for k, v in meta.items()}}
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))


EXPORTERS.register("onnx", (to_onnx, ".onnx"))
EXPORTERS.register("safetensors", (to_safetensors, ".safetensors"))


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
