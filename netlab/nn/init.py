"""Parameter initialisation as PyTorch's defaults, from a seeded :class:`~netlab.backend.Generator`."""

from __future__ import annotations

import math

from .. import backend

_default = backend.Generator(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator that layers use when none is given (like ``torch.manual_seed``)."""
    _default.load_state_dict({"seed": seed, "counter": 0})


def default_generator() -> backend.Generator:
    return _default


def kaiming_uniform(shape, fan_in: int, rng: backend.Generator | None = None):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as a float32 NumPy-namespace array.

    PyTorch's Conv2d and Linear draw weights from kaiming_uniform(a=sqrt(5)) and biases from
    U(+-1/sqrt(fan_in)); both bounds come out as 1/sqrt(fan_in).
    """
    xp = backend.namespace("numpy")
    bound = 1.0 / math.sqrt(fan_in)
    return (rng or _default).uniform(xp, -bound, bound, shape, dtype=xp.float32)
