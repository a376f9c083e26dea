"""Callbacks with Keras's names, hooks and semantics.

A callback is a small object with no-op hooks; the trainer sets `self.trainer` before training
and calls the hooks in order. To stop training, set `self.trainer.stop_training = True`.
Callbacks that remember something between epochs (a best value, a wait count, best weights)
expose `get_state()` / `set_state()` so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_write_text

MODES = ("auto", "min", "max")


class Callback:
    trainer = None  # set by the Trainer before on_train_begin

    def on_train_begin(self, logs: dict) -> None:
        """`logs['metrics']` lists the names each epoch's logs will have."""

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict) -> None:
        """`logs`: batch `loss` (a float) and `size`. Overriding this costs a host sync per batch."""

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """`logs`: loss, accuracy, val_loss, val_accuracy (with validation data), lr, time."""

    def on_train_end(self, logs: dict) -> None:
        pass

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


class _Monitor(Callback):
    """Shared by callbacks that watch one logged value for improvement."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        if mode not in MODES:
            raise CnnkitError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if mode == "auto":  # Keras: accuracy-like metrics go up, everything else down
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best = math.inf if mode == "min" else -math.inf

    def on_train_begin(self, logs):
        names = logs.get("metrics", [])
        if names and self.monitor not in names:
            hint = " (pass validation data, or monitor 'loss')" if self.monitor.startswith("val_") else ""
            raise CnnkitError(f"{type(self).__name__} monitors {self.monitor!r}, which is not "
                              f"logged{hint}; logged: {', '.join(names)}")

    def improved(self, current: float) -> bool:
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop when `monitor` has not improved for `patience` epochs. With
    `restore_best_weights`, the model ends with the weights of its best epoch (as Keras 3)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        super().__init__(monitor, mode, min_delta)
        if patience < 0:
            raise CnnkitError(f"patience={patience} is out of range; valid: an integer >= 0")
        self.patience, self.restore_best_weights = int(patience), restore_best_weights
        self.wait, self.best_epoch, self.stopped_epoch = 0, None, None
        self.best_weights: dict | None = None

    def on_epoch_end(self, epoch, logs):
        current = logs.get(self.monitor)
        if current is None or math.isnan(current):
            return
        self.wait += 1
        if self.improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone()
                                     for k, v in self.trainer.model.net.state_dict().items()}
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            self.trainer.stop_reason = (f"early stopping: {self.monitor} has not improved for "
                                        f"{self.wait} epochs (best {self.best:.4f} "
                                        f"at epoch {self.best_epoch + 1})")

    def on_train_end(self, logs):
        if self.restore_best_weights and self.best_weights is not None:
            from cnnkit.model.saving import load_state

            # via load_state: best weights restored from a state saved by an earlier version
            # carry positional names
            load_state(self.trainer.model.net, self.best_weights, "the best epoch's weights")
            self.trainer.say(f"Restored model weights from epoch {self.best_epoch + 1}, "
                             f"the best {self.monitor} ({self.best:.4f})")

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def set_state(self, state):
        self.best, self.wait = state["best"], state["wait"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self.best_weights = state["best_weights"]


class ModelCheckpoint(_Monitor):
    """Save the model (`trainer.model.save(path)`, atomic) after each epoch, or only when
    `monitor` improves with `save_best_only`. `path` may hold `{epoch:02d}` or `{val_loss:.3f}`."""

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto"):
        super().__init__(monitor, mode, 0.0)
        self.path, self.save_best_only = str(path), save_best_only
        self.best_epoch: int | None = None

    def on_train_begin(self, logs):
        if self.save_best_only:
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None or math.isnan(current) or not self.improved(current):
                return
            self.best, self.best_epoch = current, epoch
        self.trainer.model.save(self.path.format(epoch=epoch + 1, **logs))

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "auto"):
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise CnnkitError(f"factor={factor} is out of range; valid: 0 < factor < 1")
        self.factor, self.patience, self.cooldown = float(factor), int(patience), int(cooldown)
        self.min_lr = float(min_lr)
        self.wait = self.cooldown_left = 0

    def on_epoch_end(self, epoch, logs):
        current = logs.get(self.monitor)
        if current is None or math.isnan(current):
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.improved(current):
            self.best, self.wait = current, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            schedule = self.trainer.schedule
            lr = schedule.lr
            if lr > self.min_lr:
                new_lr = max(lr * self.factor, self.min_lr)
                schedule.scale *= new_lr / lr
                schedule.apply()
                self.trainer.say(f"Epoch {epoch + 1}: ReduceLROnPlateau lowered the learning "
                                 f"rate to {new_lr:.3g}")
            self.cooldown_left, self.wait = self.cooldown, 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    def set_state(self, state):
        self.best, self.wait, self.cooldown_left = state["best"], state["wait"], state["cooldown_left"]


class CSVLogger(Callback):
    """One row per epoch (`epoch` then the logged values, as Keras), rewritten atomically as
    each epoch ends, so the file is always complete and a resumed run continues it."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows: list[dict] = []

    def on_epoch_end(self, epoch, logs):
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        fields = list(dict.fromkeys(k for row in self.rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def get_state(self):
        return {"rows": self.rows}

    def set_state(self, state):
        self.rows = [dict(r) for r in state["rows"]]


class TensorBoard(Callback):
    """Event files TensorBoard reads, laid out as Keras writes them: `log_dir/train` and
    `log_dir/validation`, tags `epoch_loss`, `epoch_accuracy` (train and validation curves
    overlay in one chart) and `epoch_learning_rate`; step = epoch number (1-based)."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self._writers: dict = {}

    def _writer(self, split: str):
        from cnnkit.train.tbevents import EventWriter

        if split not in self._writers:
            self._writers[split] = EventWriter(self.log_dir / split)
        return self._writers[split]

    def on_epoch_end(self, epoch, logs):
        train = {f"epoch_{k}": v for k, v in logs.items()
                 if not k.startswith("val_") and k not in ("lr", "time")}
        train["epoch_learning_rate"] = logs["lr"]
        self._writer("train").add_scalars(epoch + 1, train)
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        if val:
            self._writer("validation").add_scalars(epoch + 1, val)


class TerminateOnNaN(Callback):
    """Stop as soon as a batch loss is NaN or infinite. The trainer then skips that epoch's
    end (no checkpoint, no saved state), so the last good checkpoint stays on disk."""

    def on_batch_end(self, batch, logs):
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.trainer.stop_training = True
            self.trainer.diverged = True
            self.trainer.stop_reason = (f"the loss became {loss} at batch {batch + 1} of epoch "
                                        f"{self.trainer.epoch + 1}; training stopped (lower the "
                                        "learning rate, or clip gradients with clip_norm)")

