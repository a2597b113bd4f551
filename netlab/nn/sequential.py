"""Containers: Sequential (layers applied in order, as ``torch.nn.Sequential``) and Residual
(a block whose output is its body's plus its input, or a projection of it)."""

from __future__ import annotations

from collections.abc import MutableMapping

from .layers import MaxPool2d, ReLU
from .module import Module, check_keys


class Params(MutableMapping):
    """A container's parameters under their state_dict keys, read and written through to the
    layer that holds each (``model.params["3.weight"] = w`` sets layer 3's weight)."""

    def __init__(self, container, store: str = "params"):
        self._where = {key: (layer, name) for key, layer, name in container.named_parameters()}
        self._store = store

    def __getitem__(self, key):
        layer, name = self._where[key]
        return getattr(layer, self._store)[name]

    def __setitem__(self, key, value):
        layer, name = self._where[key]
        getattr(layer, self._store)[name] = value

    def __delitem__(self, key):
        raise TypeError("a model's parameters cannot be removed")

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)


class Container(Module):
    """What Sequential and Residual share: their children (``named_children``) hold the
    parameters, gradients and buffers, and every mode, placement and state call goes to them."""

    def named_children(self):
        raise NotImplementedError

    def named_parameters(self):
        """Yield ``(key, layer, name)`` for every parameter; key as in :meth:`state_dict`."""
        for prefix, child in self.named_children():
            if isinstance(child, Container):
                for key, sub, name in child.named_parameters():
                    yield f"{prefix}.{key}", sub, name
            else:
                for name in child.params:
                    yield f"{prefix}.{name}", child, name

    def named_buffers(self):
        """Yield ``(key, array)`` for every buffer (batch-norm statistics); key as in :meth:`state_dict`."""
        for prefix, child in self.named_children():
            items = child.named_buffers() if isinstance(child, Container) else child.buffers.items()
            for key, value in items:
                yield f"{prefix}.{key}", value

    @property
    def params(self):
        return Params(self)

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError("set parameters on the layers, or use load_state_dict")

    @property
    def grads(self):
        return Params(self, "grads")

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("grads are filled by backward()")

    def train(self, mode: bool = True):
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def to(self, xp, dtype=None, device=None):
        self.xp, self.device = xp, device
        self.dtype = xp.float32 if dtype is None else dtype
        for _, child in self.named_children():
            child.to(xp, dtype, device)
        return self

    def set_rng(self, rng):
        self.rng = rng
        for _, child in self.named_children():
            child.set_rng(rng)
        return self

    def state_keys(self) -> list[str]:
        return [f"{prefix}.{k}" for prefix, child in self.named_children() for k in child.state_keys()]

    def state_dict(self) -> dict:
        return {f"{prefix}.{k}": v for prefix, child in self.named_children() for k, v in child.state_dict().items()}

    def load_state_dict(self, state: dict, prefix: str = "") -> None:
        check_keys(self.state_keys(), state.keys())
        for name, child in self.named_children():
            key = f"{name}."
            child.load_state_dict({k[len(key):]: v for k, v in state.items() if k.startswith(key)}, prefix + key)


def execution_order(layers, pool_before_relu: bool = True) -> list[int]:
    """The order in which :class:`Sequential` runs ``layers``: as given, except that each
    ``ReLU, MaxPool2d`` pair runs as ``MaxPool2d, ReLU`` when ``pool_before_relu``.

    The two commute exactly (max is monotone, and neither sends gradient where the window's
    maximum is <= 0), so values and gradients are bit-identical while ReLU touches a quarter
    of the data. Only parameter-free layers move; the model, its printout and its
    ``state_dict`` keep the order of the model file.
    """
    order = list(range(len(layers)))
    if pool_before_relu:
        for i in range(len(layers) - 1):
            if type(layers[order[i]]) is ReLU and type(layers[order[i + 1]]) is MaxPool2d:
                order[i], order[i + 1] = order[i + 1], order[i]
    return order


class Sequential(Container):
    """Layers applied in order; indexing, ``len()`` and iteration as ``torch.nn.Sequential``.

    ``pool_before_relu`` is an execution detail (see :func:`execution_order`); False is the
    plain twin that the tests compare it with.
    """

    def __init__(self, *layers: Module, pool_before_relu: bool = True):
        super().__init__()
        self.layers = list(layers)
        self.pool_before_relu = pool_before_relu

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({body}\n)"

    def forward(self, x):
        # Worked out once, not per step; a change of the layers or of the flag works it out again.
        key = (tuple(map(id, self.layers)), self.pool_before_relu)
        if getattr(self, "_order_key", None) != key:
            self._order_key, self._plan = key, execution_order(self.layers, self.pool_before_relu)
        self._order = self._plan
        for i in self._order:
            x = self.layers[i].forward(x)
        return x

    def backward(self, dy, input_grad: bool = True):
        """Fill every layer's grads; ``input_grad=False`` skips dL/dx of the first layer
        run (training needs no gradient with respect to the images)."""
        order = self._order
        for k in range(len(order) - 1, -1, -1):
            dy = self.layers[order[k]].backward(dy, input_grad=input_grad or k > 0)
        return dy

    def named_children(self):
        return ((str(i), layer) for i, layer in enumerate(self.layers))


class Residual(Container):
    """``body(x) + skip(x)``: the body is a Sequential; the skip is the input itself, or a
    ``projection`` (a Sequential, usually a 1x1 convolution and batch norm) where the body
    changes the number of channels or the size. x: (N, C, H, W) -> the body's output shape.
    Its state_dict keys are ``body.<i>.<name>`` and ``projection.<i>.<name>``."""

    def __init__(self, body: Sequential, projection: Sequential | None = None):
        super().__init__()
        self.body, self.projection = body, projection

    def named_children(self):
        yield "body", self.body
        if self.projection is not None:
            yield "projection", self.projection

    def __repr__(self):
        inner = repr(self.body).replace("\n", "\n  ")
        skip = repr(self.projection).replace("\n", "\n  ") if self.projection is not None else "identity"
        return f"Residual(\n  (body): {inner}\n  (skip): {skip}\n)"

    def settings(self):
        return f"{len(self.body)} layers" + (", projection" if self.projection is not None else "")

    def forward(self, x):
        y = self.body.forward(x)
        skip = x if self.projection is None else self.projection.forward(x)
        if tuple(skip.shape) != tuple(y.shape):
            raise ValueError(f"the residual body gives {tuple(y.shape[1:])} from {tuple(x.shape[1:])}; a block "
                             f"that changes the shape needs a projection")
        return y + skip

    def backward(self, dy, input_grad: bool = True):
        dx = self.body.backward(dy, input_grad=input_grad)
        dskip = dy if self.projection is None else self.projection.backward(dy, input_grad=input_grad)
        return dx + dskip if input_grad else None
