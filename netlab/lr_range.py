"""The learning-rate range test (Smith 2017, as fastai's ``lr_find``): train from the run's first
weights for a few hundred steps while the lr grows exponentially from ``start`` to ``end``,
record the training loss at each, and suggest an lr from the curve.

The suggestion is where the smoothed loss falls fastest (the steepest negative slope of loss
against log lr), which sits well below the lr at which training diverges; the lr at the lowest
loss divided by ten is reported beside it, as a second opinion.

The curve is smoothed by a centred moving average, not by the exponential one that stops the
sweep: an exponential average of 0.98 lags about 50 steps behind the loss, which over 200 steps
and six decades of lr moved both suggestions 1.5 decades too high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import backend, losses
from .errors import DivergedError


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]     # the raw training loss at each step
    smoothed: list[float]   # its centred moving average (NaN after a non-finite loss)
    steepest: float         # the suggested lr: the smoothed loss falls fastest here
    minimum_over_10: float  # the lr at the lowest smoothed loss, divided by 10
    stopped: str            # why the sweep ended

    def as_dict(self) -> dict:
        """JSON's view: a loss that was not finite (the step the sweep stopped at) is null."""
        def numbers(values):
            return [v if math.isfinite(v) else None for v in values]

        return {"suggested_lr": self.steepest, "how": "steepest fall of the smoothed loss",
                "min_loss_lr_over_10": self.minimum_over_10, "stopped": self.stopped,
                "lrs": self.lrs, "losses": numbers(self.losses), "smoothed": numbers(self.smoothed)}


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
        lrs.append(lr), raw.append(value)
        if not math.isfinite(value):
            stopped = f"the loss became {value} at lr {lr:.3g}"
            break
        # the stop rule reads an exponential average (it only looks back), the suggestions do not
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (i + 1))
        best = min(best, smoothed)
        if smoothed > diverge * best:
            stopped = f"the loss rose past {diverge:g}x its lowest at lr {lr:.3g}"
            break
    finite = next((i for i, v in enumerate(raw) if not math.isfinite(v)), len(raw))
    if finite < 2:
        raise DivergedError(f"the range test's training loss was not finite from its first steps (lr {start:g}); "
                            f"start lower (lr_find.start) or check the data")
    smooth = centred(raw[:finite], max(1, steps // 40))
    lowest = smooth.index(min(smooth))
    if lowest == 0:  # nothing fell: a suggestion would be the start lr, read from a rising curve
        raise DivergedError(f"the range test's training loss never fell below its first value (it rose from lr "
                            f"{start:g} on, {stopped}); start lower (lr_find.start)")
    return RangeTest(lrs, raw, smooth + [math.nan] * (len(raw) - finite), _steepest(lrs, smooth),
                     lrs[lowest] / 10, stopped)


def centred(values: list[float], half: int) -> list[float]:
    """The mean of each value and the ``half`` values on either side of it (fewer at the ends):
    smoothing without the lag of an exponential average."""
    out = []
    for i in range(len(values)):
        window = values[max(0, i - half): i + half + 1]
        out.append(sum(window) / len(window))
    return out


def _steepest(lrs: list[float], smoothed: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per decade of lr (its most negative slope),
    over the part of the sweep before the lowest loss."""
    end = max(2, smoothed.index(min(smoothed)) + 1)
    slopes = [(smoothed[i + 1] - smoothed[i]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i]))
              for i in range(min(end, len(smoothed)) - 1)]
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
    shown = [v for v in test.smoothed if math.isfinite(v)]
    low, high = min(shown), max(shown[: max(2, len(shown) // 2)])
    ax.set_ylim(max(0.0, low - 0.1 * (high - low)), high + 0.3 * (high - low))
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
