"""The Module base class: parameters, gradients and buffers, modes, placement and state."""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from .. import backend
from .init import default_generator


class Module:
    """A layer: ``forward(x)`` keeps what ``backward(dy)`` needs; ``backward`` returns dx and
    fills ``grads`` (same keys as ``params``). ``buffers`` hold state that is saved but not
    trained (batch-norm statistics). Arrays start in the NumPy namespace; ``to(xp)`` moves them.
    """

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.training = True
        self.xp = backend.namespace("numpy")
        self.dtype = self.xp.float32
        self.device = None
        self.rng = default_generator()

    # -- modes and placement ------------------------------------------------------------
    def train(self, mode: bool = True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, xp, dtype=None, device=None):
        """Move parameters and buffers to namespace ``xp`` (floats cast to ``dtype``); returns self."""
        self.xp = xp
        self.dtype = xp.float32 if dtype is None else dtype
        self.device = device
        self.params = {k: self._move(v, float_=True) for k, v in self.params.items()}
        self.buffers = {k: self._move(v, float_=_is_float(v)) for k, v in self.buffers.items()}
        self.grads = {k: self.xp.zeros_like(v) for k, v in self.params.items()}
        return self

    def _move(self, a, float_: bool):
        return backend.move(self.xp, a, dtype=self.dtype if float_ else None, device=self.device)

    def set_rng(self, rng: backend.Generator):
        """Use ``rng`` for this layer's random numbers (dropout masks)."""
        self.rng = rng
        return self

    # -- state ----------------------------------------------------------------------------
    def state_keys(self) -> list[str]:
        """The keys of :meth:`state_dict`, without copying anything to the host."""
        return [*self.params, *self.buffers]

    def state_dict(self) -> dict:
        """Parameters then buffers, as NumPy arrays, under PyTorch's names."""
        return {k: backend.to_numpy(v).copy() for k, v in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, state: dict, prefix: str = "") -> None:
        """Load arrays saved by :meth:`state_dict`; keys and shapes must match exactly.
        ``prefix`` is this layer's key in its container, for error messages."""
        check_keys(self.state_keys(), state.keys())
        for store in (self.params, self.buffers):
            for k, old in store.items():
                new = state[k]
                if tuple(new.shape) != tuple(old.shape):
                    raise ValueError(f"shape mismatch for {prefix + k!r}: checkpoint has {tuple(new.shape)}, "
                                     f"model expects {tuple(old.shape)}")
                if _is_float(new) != _is_float(old):  # an integer weight would be cast and trained on silently
                    raise ValueError(f"{prefix + k!r} holds {'floats' if _is_float(new) else 'integers'}; the model "
                                     f"keeps {'floats' if _is_float(old) else 'integers'} there")
                store[k] = self._move(new, float_=_is_float(old))

    def num_parameters(self) -> int:
        return sum(math.prod(p.shape) for p in self.params.values())

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, input_grad: bool = True):
        """Fill ``grads`` from dL/dy; return dL/dx, or None when ``input_grad`` is False."""
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""

    def settings(self) -> str:
        """The layer's settings in a few words, for a model summary (default: its repr's)."""
        return self.extra_repr()


def _is_float(a) -> bool:
    """Whether ``a`` holds real floats, read from its dtype (no copy, whatever its library)."""
    return array_namespace(a).isdtype(a.dtype, "real floating")


def check_keys(expected, got) -> None:
    expected, got = list(expected), list(got)
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        raise KeyError(f"state_dict keys do not match: missing {missing}, unexpected {unexpected}")
