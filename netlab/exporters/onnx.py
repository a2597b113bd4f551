"""ONNX graphs of trained models, and checking them in ONNX Runtime.

The graph takes what ``predict`` feeds the model, float32 images ``(N, C, H, W)`` with pixels
in [0, 1], normalises them in its first two nodes, and gives ``logits`` and ``probabilities``;
the batch axis is dynamic. Each layer type maps to ONNX nodes in :meth:`_Graph.layer`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend, data, nn
from ..errors import BackendError, ConfigError

OPSET = 17  # ONNX Runtime 1.14+ and every current converter read it
SUFFIX = ".onnx"


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

    def layer(self, layer, index, x: str) -> str:
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
        if isinstance(layer, nn.Tanh):
            return self.node("Tanh", [x], out)
        if isinstance(layer, nn.Sigmoid):
            return self.node("Sigmoid", [x], out)
        if isinstance(layer, nn.LeakyReLU):
            return self.node("LeakyRelu", [x], out, alpha=float(layer.negative_slope))
        if isinstance(layer, nn.GELU):  # opset 17 has no Gelu: its tanh form, node by node
            cube = self.node("Mul", [x, self.node("Mul", [x, x], f"{name}_sq")], f"{name}_cube")
            inner = self.node("Add", [x, self.node("Mul", [cube, self.const(f"{name}.a", 0.044715)], f"{name}_ac")],
                              f"{name}_in")
            t = self.node("Tanh", [self.node("Mul", [inner, self.const(f"{name}.c", nn.GELU.C)], f"{name}_sc")],
                          f"{name}_t")
            half = self.node("Mul", [x, self.const(f"{name}.h", 0.5)], f"{name}_half")
            return self.node("Mul", [half, self.node("Add", [t, self.const(f"{name}.one", 1.0)], f"{name}_1t")], out)
        if isinstance(layer, nn.GlobalAvgPool2d):
            return self.node("Flatten", [self.node("GlobalAveragePool", [x], f"{name}_gap")], out, axis=1)
        if isinstance(layer, nn.Residual):
            body = x
            for i, inner in enumerate(layer.body):
                body = self.layer(inner, f"{index}_b{i}", body)
            skip = x
            if layer.projection is not None:
                for i, inner in enumerate(layer.projection):
                    skip = self.layer(inner, f"{index}_p{i}", skip)
            return self.node("Add", [body, skip], out)
        if isinstance(layer, nn.Flatten):
            return self.node("Flatten", [x], out, axis=1)
        if isinstance(layer, nn.Dropout):
            return x  # identity in eval mode
        raise ConfigError(f"ONNX export does not know layer {type(layer).__name__}")


def _constant(value, channels: int):
    """A normalisation constant: a number as a scalar, one per channel as (1, C, 1, 1)."""
    if isinstance(value, (tuple, list)):
        return np.asarray(data.per_channel(value, channels), dtype=np.float32).reshape(1, channels, 1, 1)
    return value


def write(model: nn.Sequential, mean, std, input_shape, path: Path, meta: dict) -> Path:
    """Write ``model`` (eval mode) as an ONNX graph with its normalisation folded in front
    (``mean`` and ``std``: numbers, or one per channel, as constants of shape (1, C, 1, 1))."""
    import onnx
    from onnx import TensorProto, helper

    from ..outputs import atomic_write

    g = _Graph(helper)
    channels = int(input_shape[0])
    x = g.node("Div", [g.node("Sub", ["image", g.const("mean", _constant(mean, channels))], "centred"),
                       g.const("std", _constant(std, channels))], "normalised")
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


def agreement(path: Path, model, mean, std, images: np.ndarray, labels=None,
              batch: int = 500) -> dict:
    """ONNX Runtime's logits for ``images`` (N, C, H, W) in [0, 1] beside netlab's: the largest
    difference, the share of equal arg-maxes, and both accuracies when ``labels`` are given."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("verifying an ONNX file needs onnxruntime: pip install -e '.[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xp = backend.namespace("numpy")
    ours, theirs = [], []
    for lo in range(0, len(images), batch):
        x = images[lo:lo + batch].astype(np.float32)
        ours.append(backend.to_numpy(model.forward(data.normalize(xp.asarray(x), mean, std))))
        theirs.append(session.run(["logits"], {"image": x})[0])
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    result = {"images": len(images), "max_abs_logit_difference": float(np.abs(ours - theirs).max()),
              "same_prediction": float((ours.argmax(1) == theirs.argmax(1)).mean())}
    if labels is not None:
        result.update(netlab_accuracy=float((ours.argmax(1) == labels).mean()),
                      onnxruntime_accuracy=float((theirs.argmax(1) == labels).mean()))
    return result
