"""Build a Sequential from a model config's list of layers.

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

from . import backend, nn
from .errors import ConfigError


def _conv(shape, a, cfg):
    _need(shape, 3, "conv")
    return nn.Conv2d(shape[0], a["out"], a.get("kernel", 3), a.get("stride", 1), a.get("padding", 0),
                     a.get("bias", True))


def _linear(shape, a, cfg):
    _need(shape, 1, "linear")
    return nn.Linear(shape[0], a["out"], a.get("bias", True))


def _pool(cls):
    def make(shape, a, cfg):
        _need(shape, 3, cls.__name__)
        return cls(a.get("kernel", 2), a.get("stride"), a.get("padding", 0))
    return make


def _batchnorm(shape, a, cfg):
    return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])


LAYERS = {
    "conv": (_conv, "out"),
    "linear": (_linear, "out"),
    "maxpool": (_pool(nn.MaxPool2d), "kernel"),
    "avgpool": (_pool(nn.AvgPool2d), "kernel"),
    "relu": (lambda shape, a, cfg: nn.ReLU(), None),
    "flatten": (lambda shape, a, cfg: nn.Flatten(), None),
    "dropout": (lambda shape, a, cfg: nn.Dropout(a.get("p", cfg.dropout)), "p"),
    "batchnorm": (_batchnorm, None),
}


def _need(shape, ndim, name):
    if len(shape) != ndim:
        hint = " (add 'flatten' before it)" if ndim == 1 else ""
        raise ConfigError(f"model: layer '{name}' needs a {ndim}-d input per sample, but gets shape {shape}{hint}")


def _parse(spec):
    if isinstance(spec, str):
        return _known(spec), {}
    if hasattr(spec, "items"):
        items = list(spec.items())
        if len(items) == 1:
            name, args = items[0]
            _known(name)
            if args is None:
                return name, {}
            if hasattr(args, "items"):
                return name, dict(args)
            shorthand = LAYERS[name][1]
            if shorthand:
                return name, {shorthand: args}
    raise ConfigError(f"model: cannot read layer entry {spec!r}; write a name (relu) or {{name: args}} "
                      f"(conv: {{out: 16, kernel: 5}})")


def _known(name):
    if name not in LAYERS:
        raise ConfigError(f"model: unknown layer {name!r}; known layers: {', '.join(LAYERS)}")
    return name


def build(cfg, pool_first: bool = True) -> nn.Sequential:
    """The Sequential that ``cfg.layers`` describes, checked against ``input_shape`` and ``num_classes``.

    ``pool_first`` builds each ``relu, maxpool`` pair as ``maxpool, relu``: the two commute
    (max is monotone, and both send no gradient where the window's max is <= 0), so the
    network computes exactly the same values and gradients while ReLU touches a quarter of
    the data. Only parameter-free layers move, so state_dict keys are unchanged.
    """
    xp = backend.namespace("numpy")
    shape = tuple(cfg.input_shape)
    probe = xp.zeros((1, *shape), dtype=xp.float32)
    layers = []
    for spec in cfg.layers:
        name, args = _parse(spec)
        try:
            layer = LAYERS[name][0](shape, args, cfg)
        except KeyError as exc:
            raise ConfigError(f"model: layer {name!r} needs the argument {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model: layer {name!r} with {args}: {exc}") from None
        layer.eval()
        try:
            probe = layer.forward(probe)
        except ValueError as exc:
            raise ConfigError(f"model: layer {len(layers)} ({name}) does not fit input shape {shape}: {exc}") from None
        shape = tuple(probe.shape[1:])
        layers.append(layer)
    if pool_first:
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.ReLU) and isinstance(layers[i + 1], nn.MaxPool2d):
                layers[i], layers[i + 1] = layers[i + 1], layers[i]
    if shape != (cfg.num_classes,):
        raise ConfigError(f"model: the last layer gives shape {shape} per sample; it must give "
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
