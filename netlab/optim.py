"""Optimizers with PyTorch's update rules, and learning-rate schedules.

An optimizer holds the model, reads every layer's current ``grads`` in :meth:`step` and
writes the updated ``params`` back. ``weight_decay`` is L2: ``weight_decay * p`` is added
to the gradient before the update, as in ``torch.optim``.

Hyperparameters, their defaults and their ranges are the schema's (``netlab.config``): an
optimizer is built from its config dataclass (``hp``), or from keywords that fill one, so
``Adam(model)`` trains with the same lr as ``python -m netlab.train optimizer=adam``.
"""

from __future__ import annotations

import math

from . import backend
from .config import (AdagradConfig, AdamConfig, AdamWConfig, OptimizerConfig, RMSpropConfig, SGDConfig,
                     ScheduleConfig as _Defaults)
from .registry import Registry

SCHEDULES = Registry("schedule")
OPTIMIZERS = Registry("optimizer")


# ------------------------------------------------------------------------------- schedules
@SCHEDULES.register("constant")
class Constant:
    """lr stays at the base value."""

    @classmethod
    def from_config(cls, cfg, total_steps):
        return cls()

    def __call__(self, step: int, base_lr: float) -> float:
        return base_lr

    def describe(self, base_lr: float) -> str:
        return f"lr {base_lr:g}, constant"


@SCHEDULES.register("step")
class StepLR:
    """lr = base * gamma ** (step // step_size)."""

    def __init__(self, step_size: int = _Defaults.step_size, gamma: float = _Defaults.gamma):
        _Defaults(name="step", step_size=step_size, gamma=gamma)  # the schema's rules
        self.step_size, self.gamma = step_size, gamma

    @classmethod
    def from_config(cls, cfg, total_steps):
        return cls(cfg.step_size, cfg.gamma)

    def __call__(self, step, base_lr):
        return base_lr * self.gamma ** (step // self.step_size)

    def describe(self, base_lr: float) -> str:
        return f"lr {base_lr:g}, times {self.gamma:g} every {self.step_size} steps (schedule step)"


@SCHEDULES.register("cosine")
class Cosine:
    """Cosine decay from base to ``min_lr`` over ``total_steps``, after linear warm-up."""

    def __init__(self, total_steps: int, warmup_steps: int = _Defaults.warmup_steps, min_lr: float = _Defaults.min_lr):
        if total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        _Defaults(name="cosine", warmup_steps=warmup_steps, min_lr=min_lr)  # the schema's rules
        self.total_steps, self.warmup_steps, self.min_lr = total_steps, warmup_steps, min_lr

    @classmethod
    def from_config(cls, cfg, total_steps):
        return cls(total_steps, cfg.warmup_steps, cfg.min_lr)

    def __call__(self, step, base_lr):
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        t = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def describe(self, base_lr: float) -> str:
        warm = f"after {self.warmup_steps} warm-up steps, " if self.warmup_steps else ""
        return f"lr {base_lr:g}, {warm}cosine decay to {self.min_lr:g} by step {self.total_steps} (schedule cosine)"


@SCHEDULES.register("onecycle")
class OneCycle:
    """One-cycle: cosine rise from base/div_factor to base over ``pct_start`` of the steps,
    then cosine fall to base/(div_factor*final_div_factor), as ``torch.optim.lr_scheduler.OneCycleLR``."""

    def __init__(self, total_steps: int, pct_start: float = _Defaults.pct_start,
                 div_factor: float = _Defaults.div_factor, final_div_factor: float = _Defaults.final_div_factor):
        if total_steps < 2:
            raise ValueError("total_steps must be >= 2")
        _Defaults(name="onecycle", pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor)
        self.total_steps, self.pct_start = total_steps, pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor

    @classmethod
    def from_config(cls, cfg, total_steps):
        return cls(max(2, total_steps), cfg.pct_start, cfg.div_factor, cfg.final_div_factor)

    def __call__(self, step, base_lr):
        start = base_lr / self.div_factor
        end = start / self.final_div_factor
        peak = float(self.pct_start * self.total_steps) - 1
        step = min(step, self.total_steps - 1)
        if step <= peak:
            lo, hi, t = start, base_lr, step / peak
        else:
            lo, hi, t = base_lr, end, (step - peak) / (self.total_steps - 1 - peak)
        return hi + (lo - hi) * 0.5 * (1.0 + math.cos(math.pi * t))

    def describe(self, base_lr: float) -> str:
        peak = max(0, round(self.pct_start * self.total_steps) - 1)
        return (f"one-cycle: lr {self(0, base_lr):.3g} at step 0, up to {base_lr:g} (optimizer.lr) at step "
                f"{peak}, down to {self(self.total_steps - 1, base_lr):.3g} at step {self.total_steps - 1}")


# ------------------------------------------------------------------------------ optimizers
class Optimizer:
    """Base class: ``state`` maps parameter key -> {buffer name: array}; ``hp`` holds the
    hyperparameters (the schema dataclass ``CONFIG``, checked when it is built)."""

    CONFIG: type = OptimizerConfig

    def __init__(self, model, hp: OptimizerConfig | None = None, schedule=None, **values):
        self.hp = hp if hp is not None else self.CONFIG(**values)
        self.model = model
        self.base_lr, self.weight_decay = self.hp.lr, self.hp.weight_decay
        self.schedule = schedule or Constant()
        self.steps = 0
        self.state: dict[str, dict] = {}

    @property
    def lr(self) -> float:
        """The learning rate the next :meth:`step` uses."""
        return self.schedule(self.steps, self.base_lr)

    DECOUPLED = False  # weight decay as L2 added to the gradient (True: the weights shrink, AdamW)

    def step(self) -> None:
        lr = self.lr
        self.steps += 1
        named = list(self.model.named_parameters())
        scale = self._clip_scale(named) if self.hp.clip_norm else None
        for key, layer, name in named:
            p, g = layer.params[name], layer.grads[name]
            if scale is not None:
                g = g * scale
            if self.weight_decay and not self.DECOUPLED:
                g = g + self.weight_decay * p
            elif self.weight_decay:
                p = p * (1.0 - lr * self.weight_decay)
            layer.params[name] = self._update(p, g, self.state.setdefault(key, {}), lr)

    def _clip_scale(self, named):
        """min(1, clip_norm / (global gradient norm + 1e-6)) as a 0-d array: no host sync (as
        ``torch.nn.utils.clip_grad_norm_``)."""
        xp = self.model.xp
        total = None
        for _, layer, name in named:
            g = layer.grads[name]
            part = xp.sum(g * g)
            total = part if total is None else total + part
        return xp.minimum(self.hp.clip_norm / (xp.sqrt(total) + 1e-6), 1.0)

    def _update(self, p, g, state: dict, lr: float):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Plain arrays: ``steps`` and ``state.<param key>.<buffer>`` (NumPy)."""
        out = {"steps": backend.to_numpy(self.steps)}
        for key, bufs in self.state.items():
            for name, arr in bufs.items():
                out[f"state.{key}.{name}"] = backend.to_numpy(arr).copy()
        return out

    def load_state_dict(self, state: dict) -> None:
        xp = self.model.xp
        params = self.model.params
        self.steps = int(state["steps"])
        self.state = {}
        for full, arr in state.items():
            if not full.startswith("state."):
                continue
            key, name = full[len("state."):].rsplit(".", 1)
            if key not in params:
                raise KeyError(f"optimizer state for unknown parameter {key!r}")
            if tuple(arr.shape) != tuple(params[key].shape):
                raise ValueError(f"optimizer state {key}.{name} has shape {tuple(arr.shape)}, but the parameter "
                                 f"has {tuple(params[key].shape)}")
            self.state.setdefault(key, {})[name] = backend.move(xp, arr, dtype=params[key].dtype,
                                                                device=self.model.device)


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum; the first momentum buffer is the gradient."""

    CONFIG = SGDConfig

    def _update(self, p, g, state, lr):
        momentum = self.hp.momentum
        if momentum:
            buf = g if "momentum_buffer" not in state else momentum * state["momentum_buffer"] + g
            state["momentum_buffer"] = buf
            g = g + momentum * buf if self.hp.nesterov else buf
        return p - lr * g


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    CONFIG = AdamConfig

    def _update(self, p, g, state, lr):
        xp = self.model.xp
        b1, b2 = self.hp.betas
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
        v = (1 - b2) * (g * g) if v is None else b2 * v + (1 - b2) * (g * g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        t = self.steps
        denom = xp.sqrt(v) * (1.0 / math.sqrt(1 - b2 ** t)) + self.hp.eps
        return p - (lr / (1 - b1 ** t)) * (m / denom)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``)."""

    CONFIG = AdamWConfig
    DECOUPLED = True


@OPTIMIZERS.register("adagrad")
class Adagrad(Optimizer):
    CONFIG = AdagradConfig

    def _update(self, p, g, state, lr):
        xp = self.model.xp
        s = state.get("sum")
        s = g * g if s is None else s + g * g
        state["sum"] = s
        return p - lr * (g / (xp.sqrt(s) + self.hp.eps))


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop; eps is added outside the square root, as in PyTorch."""

    CONFIG = RMSpropConfig

    def _update(self, p, g, state, lr):
        xp = self.model.xp
        alpha = self.hp.alpha
        sq = state.get("square_avg")
        sq = (1 - alpha) * (g * g) if sq is None else alpha * sq + (1 - alpha) * (g * g)
        state["square_avg"] = sq
        step = g / (xp.sqrt(sq) + self.hp.eps)
        if self.hp.momentum:
            buf = step if "momentum_buffer" not in state else self.hp.momentum * state["momentum_buffer"] + step
            state["momentum_buffer"] = buf
            step = buf
        return p - lr * step


OPTIMIZERS.register("momentum", SGD)  # SGD whose schema preset (MomentumConfig) has momentum 0.9


def build_schedule(cfg, total_steps: int):
    """The schedule that ``cfg.name`` names, from a schedule config (``optimizer.schedule``)
    and the run's length."""
    return SCHEDULES.lookup(cfg.name).from_config(cfg, total_steps)


def build(cfg: OptimizerConfig, model, total_steps: int):
    """The optimizer that ``cfg.name`` names, for ``model``, with ``cfg`` as its hyperparameters
    and the schedule it describes over ``total_steps``."""
    return OPTIMIZERS.lookup(cfg.name)(model, hp=cfg, schedule=build_schedule(cfg.schedule, total_steps))
