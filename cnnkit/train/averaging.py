"""Weight averaging: an exponential moving average (EMA) of a network's weights.

After every optimizer step, each averaged tensor moves towards the network's:
`avg ← avg + (1 - d) · (w - avg)`, with `d = min(decay, (1 + n) / (10 + n))` after `n` updates,
so that the first steps, far from where training ends, are forgotten quickly (the warm-up
used by timm and TensorFlow's ExponentialMovingAverage with num_updates). Batch norm's running
statistics are averaged the same way; integer buffers (batch counters) follow the network.

The trainer keeps two sets of weights and swaps them once per epoch (a few copies of ~30k
numbers for the fast models, nothing per step beyond the lerp): the network trains with its own weights, and between epochs (validation, callbacks, checkpoints)
and after training it holds the averages. This is Keras 3's `use_ema` with its weights
overwritten at the end of `fit`, except that validation also sees the averaged weights, so
early stopping and the best checkpoint judge the weights the user will get.
"""
from __future__ import annotations

import torch


class WeightAverage:
    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        # state_dict's tensors share storage with the parameters and buffers: updated in place.
        live = [t for t in net.state_dict().values() if t.is_floating_point()]
        self._live = live
        self._other = [t.detach().clone() for t in live]  # clone keeps channels_last strides
        self.in_use = False  # True while the network holds the averages (and _other its own)

    def update(self) -> None:
        """Move the averages one step towards the network's current weights."""
        if self.in_use:
            raise RuntimeError("WeightAverage.update while the network holds the averages")
        n = self.updates
        d = min(self.decay, (1 + n) / (10 + n))
        with torch.no_grad():
            torch._foreach_lerp_(self._other, self._live, 1.0 - d)
        self.updates = n + 1

    def swap(self) -> None:
        """Exchange the network's weights and the averages (call again to undo)."""
        with torch.no_grad():
            for live, other in zip(self._live, self._other):
                tmp = live.clone()
                live.copy_(other)
                other.copy_(tmp)
        self.in_use = not self.in_use

    def use_average(self) -> None:
        if not self.in_use:
            self.swap()

    def use_own(self) -> None:
        if self.in_use:
            self.swap()

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "in_use": self.in_use,
                "other": list(self._other)}

    def load_state_dict(self, state: dict) -> None:
        other = state["other"]
        if len(other) != len(self._other) or any(
                a.shape != b.shape for a, b in zip(other, self._other)):
            raise ValueError("weight average state does not match the model")
        with torch.no_grad():
            for mine, saved in zip(self._other, other):
                mine.copy_(saved)
        self.updates, self.in_use = int(state["updates"]), bool(state["in_use"])
