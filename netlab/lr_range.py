"""The learning-rate range test (Smith 2017, as fastai's ``lr_find``): train from the run's first
weights for a few hundred steps while the lr grows exponentially from ``start`` to ``end``,
record the training loss at each, and suggest an lr from the curve.

The suggestion is where the smoothed loss falls fastest (the steepest negative slope of loss
against log lr), which sits well below the lr at which training diverges; the lr at the lowest
loss divided by ten is reported beside it, as a second opinion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import backend, losses


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]     # the raw training loss at each step
    smoothed: list[float]   # its exponential moving average, bias-corrected
    steepest: float         # the suggested lr: the smoothed loss falls fastest here
    minimum_over_10: float  # the lr at the lowest smoothed loss, divided by 10
    stopped: str            # why the sweep ended

    def as_dict(self) -> dict:
        return {"suggested_lr": self.steepest, "how": "steepest fall of the smoothed loss",
                "min_loss_lr_over_10": self.minimum_over_10, "stopped": self.stopped,
                "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed}


def run(trainer, start: float = 1e-6, end: float = 1.0, steps: int = 200, beta: float = 0.98,
        diverge: float = 4.0) -> RangeTest:
    """The range test on ``trainer``'s model, data and optimizer (its schedule is replaced by the
    sweep); the model's weights are changed by it, so start from a fresh trainer."""
    if not (0 < start < end and math.isfinite(end)) or steps < 10:
        raise ValueError("need 0 < start < end and at least 10 steps")
    model, opt = trainer.model, trainer.opt
    growth = (end / start) ** (1.0 / (steps - 1))
    lrs, raw, smooth = [], [], []
    average, best, stopped = 0.0, math.inf, f"reached lr {end:g}"
    model.train()
    batches = _endless(trainer)
    smoothing = trainer.cfg.train.label_smoothing
    for i in range(steps):
        lr = start * growth ** i
        opt.base_lr = lr
        opt.schedule = _Fixed()
        xb, yb = next(batches)
        loss, dlogits = losses.softmax_cross_entropy(model.forward(xb), yb, smoothing)
        model.backward(dlogits, input_grad=False)
        opt.step()
        value = float(backend.to_numpy(loss))  # one sync per step: the sweep reads every loss
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (i + 1))
        lrs.append(lr), raw.append(value), smooth.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(value) or smoothed > diverge * best:
            stopped = f"the loss rose past {diverge:g}x its lowest at lr {lr:.3g}"
            break
    return RangeTest(lrs, raw, smooth, _steepest(lrs, smooth), lrs[smooth.index(min(smooth))] / 10, stopped)


def _steepest(lrs: list[float], smoothed: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per decade of lr (its most negative slope),
    over the part of the sweep before the lowest loss."""
    end = max(2, smoothed.index(min(smoothed)) + 1)
    slopes = [(smoothed[i + 1] - smoothed[i]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i]))
              for i in range(min(end, len(lrs)) - 1)]
    return lrs[slopes.index(min(slopes))] if slopes else lrs[0]


def _endless(trainer):
    epoch = 0
    while True:
        yield from trainer.loader.batches(epoch)
        epoch += 1


class _Fixed:
    """A schedule that keeps the lr the sweep sets."""

    def __call__(self, step: int, base_lr: float) -> float:
        return base_lr

    def describe(self, base_lr: float) -> str:
        return f"lr {base_lr:g}, set by the range test"


def figure(test: RangeTest, title: str):
    """Loss against lr (log scale), raw and smoothed, the suggestions marked."""
    from .plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(test.lrs, test.losses, color="tab:blue", alpha=0.3, label="training loss")
    ax.plot(test.lrs, test.smoothed, color="tab:blue", label="smoothed")
    ax.axvline(test.steepest, color="tab:green", linestyle="--", label=f"steepest fall: {test.steepest:.2g}")
    ax.axvline(test.minimum_over_10, color="tab:orange", linestyle=":",
               label=f"lowest loss / 10: {test.minimum_over_10:.2g}")
    low, high = min(test.smoothed), max(test.smoothed[: max(2, len(test.smoothed) // 2)])
    ax.set_ylim(max(0.0, low - 0.1 * (high - low)), high + 0.3 * (high - low))
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
