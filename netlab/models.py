"""Build a Sequential from a model file's list of layers.

Each entry is a layer name (``relu``, ``flatten``, ``dropout``, ``batchnorm``) or a one-key
mapping ``{name: args}``, where args is a mapping of keyword arguments or a single number:

    layers:
      - conv: {out: 16, kernel: 5, padding: 2}
      - relu
      - maxpool: 2
      - flatten
      - linear: 10

Input sizes are inferred, so a user can write a new model as a YAML file without code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from . import backend, nn
from .nn.im2col import conv_outsize
from .errors import ConfigError
from .registry import Registry


# A model file is data from anywhere (a checkpoint embeds one): sizes are bounded before any
# weight or activation is allocated. 50M parameters is 230x the seed CNN.
MAX_PARAMETERS = 50_000_000
MAX_ACTIVATIONS = 16_000_000  # values per sample after any layer


@dataclass(frozen=True)
class LayerSpec:
    """How a model-file entry becomes a layer: ``make(builder, probe, args, where)`` with
    ``args`` limited to ``allowed`` keys (``probe`` is a zero sample of the layer's input; the
    builder holds the model file and builds nested entries); a bare number means
    ``{shorthand: number}``. ``size(shape, args)`` gives ``(parameters, output values per
    sample)`` without building anything."""

    make: Callable
    allowed: tuple[str, ...] = ()
    shorthand: str | None = None
    ndim: int | None = None  # dimensions per sample the layer needs (3: images, 1: vectors)
    size: Callable = lambda shape, args: (0, math.prod(shape))


LAYERS = Registry("layer")


def _size(args, key, default=None, low=1):
    """Integer argument ``key`` (>= ``low``); floats such as 10.5 and booleans are refused."""
    value = args.get(key, default)
    if value is None:
        raise ConfigError(f"needs the argument '{key}'")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value):
            return tuple(value)
        raise ConfigError(f"'{key}' must be an integer >= {low} (or a pair of them), got {value!r}")
    if value < low:
        raise ConfigError(f"'{key}' must be an integer >= {low}, got {value}")
    return value


def _channels(probe):
    return probe.shape[1]


def _conv(b, probe, a, where):
    return nn.Conv2d(_channels(probe), _size(a, "out"), _size(a, "kernel", 3), _size(a, "stride", 1),
                     _size(a, "padding", 0, low=0), _flag(a, "bias"))


def _linear(b, probe, a, where):
    return nn.Linear(_channels(probe), _size(a, "out"), _flag(a, "bias"))


def _flag(args, key, default=True):
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    return value


def _pool(cls):
    def make(b, probe, a, where):
        stride = _size(a, "stride") if a.get("stride") is not None else None
        return cls(_size(a, "kernel", 2), stride, _size(a, "padding", 0, low=0))
    return make


def _conv_size(shape, a):
    kh, kw = _pair(_size(a, "kernel", 3))
    sh, sw = _pair(_size(a, "stride", 1))
    ph, pw = _pair(_size(a, "padding", 0, low=0))
    out = _size(a, "out")
    return out * shape[0] * kh * kw + out, out * conv_outsize(shape[1], kh, sh, ph) * conv_outsize(shape[2], kw, sw, pw)


def _linear_size(shape, a):
    out = _size(a, "out")
    return shape[0] * out + out, out


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _dropout(b, probe, a, where):
    p = a.get("p", b.cfg.dropout)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"'p' must be a probability in [0, 1), got {p!r}")
    return nn.Dropout(float(p))


def _batchnorm(b, probe, a, where):
    return nn.BatchNorm2d(_channels(probe)) if probe.ndim == 4 else nn.BatchNorm1d(_channels(probe))


def _leaky(b, probe, a, where):
    slope = a.get("slope", 0.01)
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0.0 <= slope < 1.0:
        raise ConfigError(f"'slope' must be a number in [0, 1), got {slope!r}")
    return nn.LeakyReLU(float(slope))


LAYERS.register("conv", LayerSpec(_conv, ("out", "kernel", "stride", "padding", "bias"), "out", 3, _conv_size))
LAYERS.register("linear", LayerSpec(_linear, ("out", "bias"), "out", 1, _linear_size))
LAYERS.register("maxpool", LayerSpec(_pool(nn.MaxPool2d), ("kernel", "stride", "padding"), "kernel", 3))
LAYERS.register("avgpool", LayerSpec(_pool(nn.AvgPool2d), ("kernel", "stride", "padding"), "kernel", 3))
LAYERS.register("relu", LayerSpec(lambda b, probe, a, where: nn.ReLU()))
LAYERS.register("tanh", LayerSpec(lambda b, probe, a, where: nn.Tanh()))
LAYERS.register("sigmoid", LayerSpec(lambda b, probe, a, where: nn.Sigmoid()))
LAYERS.register("gelu", LayerSpec(lambda b, probe, a, where: nn.GELU()))
LAYERS.register("leaky_relu", LayerSpec(_leaky, ("slope",), "slope"))
LAYERS.register("flatten", LayerSpec(lambda b, probe, a, where: nn.Flatten()))
LAYERS.register("global_avgpool", LayerSpec(lambda b, probe, a, where: nn.GlobalAvgPool2d(), ndim=3))
LAYERS.register("dropout", LayerSpec(_dropout, ("p",), "p"))
LAYERS.register("batchnorm", LayerSpec(_batchnorm))



def _parse(spec, where: str):
    """``(name, args)`` of one model-file entry."""
    if isinstance(spec, str):
        LAYERS.lookup(spec)
        return spec, {}
    if hasattr(spec, "items") and len(spec) == 1:
        (name, args), = spec.items()
        layer = LAYERS.lookup(name)
        if args is None:
            return name, {}
        if hasattr(args, "items"):
            args = dict(args)
            unknown = sorted(set(args) - set(layer.allowed))
            if unknown:
                raise ConfigError(f"{where} ({name}): unknown argument {', '.join(map(repr, unknown))}; "
                                  f"{name} takes {', '.join(layer.allowed) or 'no arguments'}")
            return name, args
        if layer.shorthand and not isinstance(args, (list, str)):
            return name, {layer.shorthand: args}
    raise ConfigError(f"{where}: cannot read the entry {spec!r}; write a name (relu) or {{name: args}} "
                      f"(conv: {{out: 16, kernel: 5}})")


class _Builder:
    """Builds layers from model-file entries, inferring each input size by running a probe
    sample through what is built so far, and keeping the whole model within the bounds."""

    def __init__(self, cfg, conv: str):
        self.cfg, self.conv, self.parameters = cfg, conv, 0

    def stack(self, specs, probe, where: str):
        """``(layers, probe after them)`` for a list of entries."""
        if not isinstance(specs, (list, tuple)) and not hasattr(specs, "__len__") or isinstance(specs, (str, dict)):
            raise ConfigError(f"{where}: the layers must be a list, one '- ' entry per layer")
        if not specs:
            raise ConfigError(f"{where}: lists no layers")
        layers = []
        for position, spec in enumerate(specs):
            layer, probe = self.one(spec, probe, f"{where}, layer {position}" if where != "model" else
                                    f"model: layer {position}")
            layers.append(layer)
        return layers, probe

    def one(self, spec, probe, where: str):
        name, args = _parse(spec, where)
        layer_spec = LAYERS[name]
        shape = tuple(probe.shape[1:])
        if layer_spec.ndim is not None and len(shape) != layer_spec.ndim:
            hint = " (add 'flatten' before it)" if layer_spec.ndim == 1 else ""
            raise ConfigError(f"{where} ({name}) needs a {layer_spec.ndim}-d input per sample, "
                              f"but gets shape {shape}{hint}")
        try:
            params, values = layer_spec.size(shape, args)
            self.parameters += params
            if self.parameters > MAX_PARAMETERS or values > MAX_ACTIVATIONS:
                raise ConfigError(f"the model would have {self.parameters:,} parameters and {values:,} values per "
                                  f"sample after this layer; netlab refuses more than {MAX_PARAMETERS:,} and "
                                  f"{MAX_ACTIVATIONS:,} (models.MAX_PARAMETERS, models.MAX_ACTIVATIONS)")
            layer = layer_spec.make(self, probe, args, where)
            if isinstance(layer, nn.Conv2d):
                layer.algorithm = self.conv
        except ConfigError as exc:
            raise ConfigError(f"{where} ({name}): {exc}") if not str(exc).startswith(where) else exc from None
        except (TypeError, ValueError) as exc:
            hint = f" (backend.conv={self.conv})" if self.conv != nn.layers.AUTO and name == "conv" else ""
            raise ConfigError(f"{where} ({name}) with {args}{hint}: {exc}") from None
        layer.eval()
        try:
            out = layer.forward(probe)
        except ValueError as exc:
            raise ConfigError(f"{where} ({name}) does not fit input shape {shape}: {exc}") from None
        if math.prod(out.shape[1:]) > MAX_ACTIVATIONS:
            raise ConfigError(f"{where} ({name}) gives {math.prod(out.shape[1:]):,} values per sample; netlab "
                              f"refuses more than {MAX_ACTIVATIONS:,} (models.MAX_ACTIVATIONS)")
        return layer, out


def _residual(builder, probe, a, where):
    """A residual block: its ``layers`` (the body) plus the input, through a projection (a 1x1
    convolution with the body's stride, no bias, and batch norm) where the shape changes, or
    when ``projection: true``."""
    body_layers, out = builder.stack(a.get("layers"), probe, f"{where} (residual)")
    body = nn.Sequential(*body_layers)
    wanted = a.get("projection", "auto")
    if wanted not in ("auto", True, False):
        raise ConfigError(f"'projection' must be auto, true or false, got {wanted!r}")
    changes = tuple(out.shape[1:]) != tuple(probe.shape[1:])
    if changes and wanted is False:
        raise ConfigError(f"the body changes the shape {tuple(probe.shape[1:])} -> {tuple(out.shape[1:])}, so "
                          f"the block needs a projection (projection: auto or true)")
    projection = None
    if wanted is True or changes:
        if probe.ndim != 4 or out.ndim != 4:
            raise ConfigError("a projection joins image shapes (C, H, W); this body changes another shape")
        (c, h, w), (o, oh, ow) = probe.shape[1:], out.shape[1:]
        stride = (max(1, -(-h // oh)), max(1, -(-w // ow)))
        projection = nn.Sequential(nn.Conv2d(c, o, 1, stride=stride, bias=False), nn.BatchNorm2d(o))
        for layer in projection:
            if isinstance(layer, nn.Conv2d):
                layer.algorithm = builder.conv
        builder.parameters += c * o + 2 * o
        projection.eval()
        if tuple(projection.forward(probe).shape) != tuple(out.shape):
            raise ConfigError(f"a 1x1 projection cannot turn {tuple(probe.shape[1:])} into "
                              f"{tuple(out.shape[1:])}; keep the body's sizes in step (padding, strides)")
    return nn.Residual(body, projection)


LAYERS.register("residual", LayerSpec(_residual, ("layers", "projection"), ndim=3))


def build(cfg, conv: str = nn.layers.AUTO) -> nn.Sequential:
    """The Sequential that ``cfg.layers`` describes, checked against ``input_shape`` and
    ``num_classes``: every size is inferred by running a probe sample through the layers.
    ``conv`` is the algorithm of every convolution (backend.conv)."""
    xp = backend.namespace("numpy")
    shape = tuple(cfg.input_shape)
    if not (1 <= len(shape) <= 3 and all(isinstance(d, int) and 1 <= d <= 4096 for d in shape)) \
            or math.prod(shape) > MAX_ACTIVATIONS:
        raise ConfigError(f"model: input_shape must be 1 to 3 sizes from 1 to 4096 (e.g. [1, 28, 28]), got {list(shape)}")
    if isinstance(cfg.num_classes, bool) or not 1 <= cfg.num_classes <= 100_000:
        raise ConfigError(f"model: num_classes must be from 1 to 100000, got {cfg.num_classes}")
    if conv != nn.layers.AUTO:
        try:
            nn.layers.CONV_ALGORITHMS.lookup(conv)
        except ConfigError as exc:
            raise ConfigError(f"backend.conv: {exc}") from None
    if not cfg.layers:
        raise ConfigError("model: the model file lists no layers")
    layers, probe = _Builder(cfg, conv).stack(cfg.layers, xp.zeros((1, *shape), dtype=xp.float32), "model")
    out = tuple(probe.shape[1:])
    if out != (cfg.num_classes,):
        raise ConfigError(f"model: the last layer gives shape {out} per sample; it must give "
                          f"({cfg.num_classes},), one score per class")
    return nn.Sequential(*layers).train()


def flops_per_image(model: nn.Sequential, input_shape) -> int:
    """Multiply-adds x2 of one forward pass through the convolution and linear layers."""
    xp = backend.namespace("numpy")
    x = xp.zeros((1, *input_shape), dtype=xp.float32)
    total = 0
    model.eval()
    for layer in model:
        y = layer.forward(x)
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += 2 * math.prod(y.shape[1:]) * layer.in_channels * kh * kw
        elif isinstance(layer, nn.Linear):
            total += 2 * layer.in_features * layer.out_features
        x = y
    model.train()
    return total


class Summary(list):
    """Per-layer rows ``(index, type, settings, output shape, parameters)``, printed as a table."""

    def __str__(self):
        rows = [("#", "layer", "settings", "output shape", "parameters")]
        rows += [(str(i), kind, settings, "x".join(map(str, shape)), f"{params:,}")
                 for i, kind, settings, shape, params in self]
        total = sum(r[4] for r in self)
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        widths[2] = min(widths[2], 60)
        lines = [f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2][:60]:<{widths[2]}}  {r[3]:>{widths[3]}}  "
                 f"{r[4]:>{widths[4]}}" for r in rows]
        rule = "-" * len(lines[0])
        return "\n".join([lines[0], rule, *lines[1:], rule, f"{'total':<{len(lines[0]) - widths[4] - 2}}  "
                                                            f"{total:>{widths[4]},}"])


def summary(model: nn.Sequential, input_shape) -> Summary:
    """Each layer's type, settings, output shape per sample and parameter count, worked out by
    running one zero sample through the layers in the model file's order (eval mode)."""
    xp = model.xp
    x = xp.zeros((1, *input_shape), dtype=xp.float32, device=model.device)
    was_training = model.training
    model.eval()
    rows = Summary()
    for i, layer in enumerate(model):
        x = layer.forward(x)
        rows.append((i, type(layer).__name__, layer.settings(), tuple(x.shape[1:]), layer.num_parameters()))
    model.train(was_training)
    return rows


def feature_maps(model: nn.Sequential, x) -> tuple:
    """``(logits, maps)`` of ``model`` (eval mode) on ``x``, with ``maps`` the output of every
    convolution and pooling layer as ``(layer index, layer, output)``, in the model file's order."""
    maps = []
    for i, layer in enumerate(model):
        x = layer.forward(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            maps.append((i, layer, x))
    return x, maps
