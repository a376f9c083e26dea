"""The learning-rate finder (Smith 2015, as fastai's `lr_find`): a short training whose rate
grows exponentially each batch, from START to END, and the loss recorded at each rate.

It is a callback, so the steps are the trainer's own (its data order, augmentation, precision,
optimizer): `LRRamp(steps)` sets each batch's rate before the batch and stops training once the
loss has blown up (its exponential average, as fastai's, 4x its lowest), turned nan, or
`steps` batches are done. `suggest` picks the rate where the smoothed loss falls fastest
against log(rate): fastai's "steepest" point, a rate the loss still descends quickly at, well
before it diverges.

The smoothing for the suggestion is a centred moving average, not fastai's exponential one:
over a 100-step ramp an exponential average with fastai's 0.98 lags ~50 steps, a factor of
about 10^4 in rate, so its steepest point sits at rates where the raw loss already climbs
(on digits: 0.066 for Adam, which trains to 0.85 in 3 epochs where the default 0.001 gives
0.93-0.95). The window is a fifth of the ramp, about 1.7 decades of rate: narrower, the point
moves into the noisy edge of divergence (15 steps: 0.018, which trained to 0.93 or 0.97 on
two runs); wider, it drifts to the low rates before the fall (31 steps: 0.004).
"""
from __future__ import annotations

import math

import numpy as np

from cnnkit.train.hooks import Callback

START, END = 1e-7, 10.0  # fastai's range
MAX_STEPS = 100
STOP_SMOOTHING = 0.98  # the exponential average that decides the loss blew up, as fastai
BLOWN_UP = 4.0  # that average this many times its lowest: stop
WINDOW = 21  # steps in the centred average the suggestion is read from


class LRRamp(Callback):
    """Rates START..END over `steps` batches, exponentially; `lrs` and `losses` (each batch's
    own loss) record them."""

    def __init__(self, steps: int = MAX_STEPS, start: float = START, end: float = END):
        self.steps, self.start, self.end = steps, start, end
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self._avg, self._lowest = 0.0, math.inf

    def rate(self, i: int) -> float:
        return self.start * (self.end / self.start) ** (i / max(1, self.steps - 1))

    def on_train_batch_begin(self, batch, logs=None):
        lr = self.rate(len(self.lrs))
        for g in self.trainer.optimizer.param_groups:
            g["lr"] = lr  # the schedule's step afterwards is overridden here, batch by batch
        self.lrs.append(lr)

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self.lrs.pop()  # a nan says nothing about the curve
            self._stop("the loss became nan")
            return
        self.losses.append(loss)
        n = len(self.losses)
        self._avg = STOP_SMOOTHING * self._avg + (1 - STOP_SMOOTHING) * loss
        avg = self._avg / (1 - STOP_SMOOTHING ** n)  # debiased
        self._lowest = min(self._lowest, avg)
        if n >= self.steps:
            self._stop(f"{self.steps} steps")
        elif n > 1 and avg > BLOWN_UP * self._lowest:
            self._stop("the loss blew up")

    def _stop(self, why: str) -> None:
        self.trainer.stop_training, self.trainer.stop_reason = True, f"lr_find: {why}"


def smoothed(losses) -> np.ndarray:
    """Each loss averaged with its neighbours, WINDOW steps centred on it (fewer at the ends)."""
    losses = np.asarray(losses, float)
    half = min(WINDOW, len(losses)) // 2
    sums = np.concatenate([[0.0], np.cumsum(losses)])
    lo = np.clip(np.arange(len(losses)) - half, 0, None)
    hi = np.clip(np.arange(len(losses)) + half + 1, None, len(losses))
    return (sums[hi] - sums[lo]) / (hi - lo)


def suggest(lrs, losses) -> float:
    """The rate of the steepest descent of the smoothed loss against log(rate), among the
    points before its lowest (after that the loss only climbs)."""
    lrs, curve = np.asarray(lrs, float), smoothed(losses)
    if len(curve) < 3:
        raise ValueError("too few steps to suggest a learning rate")
    low = int(np.argmin(curve))
    skip = max(1, len(curve) // 10)  # the first steps: a rate too low to move anything
    part = slice(skip, max(low, skip + 2) + 1)
    grads = np.gradient(curve[part], np.log(lrs[part]))
    return float(lrs[part][int(np.argmin(grads))])
