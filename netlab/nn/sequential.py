"""Sequential: layers applied in order, as ``torch.nn.Sequential``."""

from __future__ import annotations

from .layers import MaxPool2d, ReLU
from .module import Module, check_keys


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


class Sequential(Module):
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

    def train(self, mode: bool = True):
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def to(self, xp, dtype=None, device=None):
        self.xp, self.device = xp, device
        self.dtype = xp.float32 if dtype is None else dtype
        for layer in self.layers:
            layer.to(xp, dtype, device)
        return self

    def set_rng(self, rng):
        self.rng = rng
        for layer in self.layers:
            layer.set_rng(rng)
        return self

    def named_parameters(self):
        """Yield ``(key, layer, name)`` for every parameter; key as in :meth:`state_dict`."""
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                for key, sub, name in layer.named_parameters():
                    yield f"{i}.{key}", sub, name
            else:
                for name in layer.params:
                    yield f"{i}.{name}", layer, name

    def named_buffers(self):
        """Yield ``(key, array)`` for every buffer (batch-norm statistics); key as in :meth:`state_dict`."""
        for i, layer in enumerate(self.layers):
            items = layer.named_buffers() if isinstance(layer, Sequential) else layer.buffers.items()
            for key, value in items:
                yield f"{i}.{key}", value

    @property
    def params(self):
        return {key: layer.params[name] for key, layer, name in self.named_parameters()}

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError("set parameters on the layers, or use load_state_dict")

    @property
    def grads(self):
        return {key: layer.grads[name] for key, layer, name in self.named_parameters()}

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("grads are filled by backward()")

    def state_keys(self) -> list[str]:
        return [f"{i}.{k}" for i, layer in enumerate(self.layers) for k in layer.state_keys()]

    def state_dict(self) -> dict:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.state_dict().items()}

    def load_state_dict(self, state: dict, prefix: str = "") -> None:
        check_keys(self.state_keys(), state.keys())
        for i, layer in enumerate(self.layers):
            key = f"{i}."
            layer.load_state_dict({k[len(key):]: v for k, v in state.items() if k.startswith(key)}, prefix + key)
