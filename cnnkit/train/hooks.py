"""The callback protocol, shaped like Keras's: `Callback` and its no-op hooks, the one
`History`, and `MonitorCallback`, the base of callbacks that watch one logged value.
The callbacks themselves are in cnnkit.train.callbacks, which names these too."""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError, one_of

MODES = ("auto", "min", "max")


class Callback:
    model = None  # set_model: the model being trained (a Sequential, a ModuleModel, ...)
    trainer = None  # the Trainer running the fit, set before on_train_begin
    params: dict = {}  # set_params: epochs, steps, verbose

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None) -> None:
        """`logs['metrics']` lists the names each epoch's logs will have."""

    def on_train_end(self, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        """`logs`: loss and the metrics (accuracy), their `val_` twins with validation data;
        cnnkit's own runs also log lr and time."""

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        """`logs`: the batch's `loss` (a float) and `size`."""
        self.on_batch_end(batch, logs)

    def on_batch_end(self, batch: int, logs=None) -> None:
        """cnnkit's earlier name for on_train_batch_end, still called by it."""

    def on_test_begin(self, logs=None) -> None:
        pass

    def on_test_end(self, logs=None) -> None:
        pass

    def on_predict_begin(self, logs=None) -> None:
        pass

    def on_predict_end(self, logs=None) -> None:
        pass

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    # -- for the callbacks below ----------------------------------------------------------------
    def stop(self, reason: str, diverged: bool = False) -> None:
        """End training after this epoch (after this batch, from a batch hook)."""
        if self.model is not None:
            self.model.stop_training = True
        if self.trainer is not None:
            self.trainer.stop_training = True
            self.trainer.diverged = self.trainer.diverged or diverged
            self.trainer.stop_reason = reason

    def tell(self, message: str) -> None:
        """Keras's `verbose=1` callbacks print; otherwise the fit's own output says it."""
        if getattr(self, "verbose", 0):
            print(message, flush=True)
        elif self.trainer is not None:
            self.trainer.say(message)

    def net_weights(self) -> dict:
        """A copy of the network's tensors (any model: Keras's, cnnkit's, a module's)."""
        return {k: v.detach().clone() for k, v in self.model.net.state_dict().items()}


def overrides(cb: Callback, hook: str) -> bool:
    """True when `cb` has its own `hook` (a method, or a function given to LambdaCallback)."""
    fn = getattr(cb, hook)
    return getattr(fn, "__func__", fn) is not getattr(Callback, hook)


class History(Callback):
    """`fit` returns it: `.history` maps each logged name to its list of per-epoch values."""

    def __init__(self, history: dict | None = None, epoch: list | None = None):
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.epoch: list[int] = list(epoch or [])

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    on_epoch_end = append

    def to_dict(self) -> dict:
        return {"history": self.history, "epoch": self.epoch}

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


class MonitorCallback(Callback):
    """The base of callbacks that watch one logged value for improvement."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0,
                 baseline: float | None = None):
        if mode not in MODES:
            raise one_of("mode", mode, MODES)
        if mode == "auto":  # Keras: accuracy-like metrics go up, everything else down
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.baseline = baseline
        self.best = math.inf if mode == "min" else -math.inf

    def on_train_begin(self, logs=None):
        names = (logs or {}).get("metrics", [])
        if names and self.monitor not in names:
            hint = (" (pass validation data: validation_data or validation_split, or monitor "
                    "'loss')" if self.monitor.startswith("val_") else "")
            raise CnnkitError(f"{type(self).__name__} monitors {self.monitor!r}, which is not "
                              f"logged{hint}; logged: {', '.join(names)}")

    def current(self, logs) -> float | None:
        """The monitored value this epoch; None when not logged this epoch (validation_freq)."""
        value = (logs or {}).get(self.monitor)
        return None if value is None or math.isnan(value) else float(value)

    def improved(self, current: float, reference: float | None = None) -> bool:
        reference = self.best if reference is None else reference
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta
