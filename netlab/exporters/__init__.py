"""Taking a trained model out of netlab: one module per format, each with ``write(model, mean,
std, input_shape, path, meta)`` and its file ``SUFFIX``. A new format is a module here and a
line in ``EXPORTERS``."""

from ..registry import Registry
from . import onnx, safetensors

EXPORTERS = Registry("export format")
EXPORTERS.register("onnx", onnx)
EXPORTERS.register("safetensors", safetensors)
