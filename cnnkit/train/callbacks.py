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
    overlay in one chart) and `epoch_learning_rate`; step = epoch number (1-based).

    Also, for TensorBoard's other tabs: IMAGES, a grid of training images (`training_images`,
    step 0, once) and the validation split's confusion matrix after each epoch
    (`confusion_matrix`, rows = true class); HPARAMS, the run's hyper-parameters, written in
    `log_dir` itself so TensorBoard takes train/ and validation/ as that session's metrics.
    The trainer's `train_data` / `validation_data` (set by `fit`) feed the images; the extra
    validation pass and drawing happen only here, so a run without TensorBoard pays nothing."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self._writers: dict = {}

    def _writer(self, split: str):
        from cnnkit.train.tbevents import EventWriter

        if split not in self._writers:
            self._writers[split] = EventWriter(self.log_dir / split)
        return self._writers[split]

    def on_train_begin(self, logs):
        if self.trainer.epoch > 0:  # resumed: the run's first session wrote these already
            return
        self._writer("").add_hparams(_hparams(self.trainer))
        train = getattr(self.trainer, "train_data", None)  # None: an engine that keeps no data
        if train is not None:
            self._writer("train").add_image(0, "training_images", _sample_grid(train[0]))

    def on_epoch_end(self, epoch, logs):
        train = {f"epoch_{k}": v for k, v in logs.items()
                 if not k.startswith("val_") and k not in ("lr", "time")}
        train["epoch_learning_rate"] = logs["lr"]
        self._writer("train").add_scalars(epoch + 1, train)
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        if val:
            self._writer("validation").add_scalars(epoch + 1, val)
        data = getattr(self.trainer, "validation_data", None)
        if data is not None:
            self._writer("validation").add_image(epoch + 1, "confusion_matrix",
                                                 _confusion_png(self.trainer, *data))

    def on_train_end(self, logs):
        self._writer("").add_session_end("failure" if self.trainer.diverged else "success")


# Hyper-parameters shown in TensorBoard's HPARAMS tab: what shapes the numbers, not where or how
# verbosely they were computed (device, verbose, eval_batch_size, ...).
HPARAMS = ("epochs", "batch_size", "optimizer", "momentum", "nesterov", "weight_decay", "loss",
           "label_smoothing", "schedule", "clip_norm", "augment", "test_time_flip", "ema",
           "normalize")


def _hparams(trainer) -> dict:
    import json

    cfg = trainer.config.to_dict()
    hp = {"model": getattr(trainer.model, "name", None),  # a Sequential's; absent elsewhere
          "dataset": getattr(trainer.model, "dataset", None),
          **{k: cfg[k] for k in HPARAMS},
          "lr": trainer.optimizer.defaults["lr"],  # as used: an unset lr is Keras's default
          "seed": trainer.seed, "precision": trainer.precision}
    if cfg["schedule"] == "step":
        hp |= {"step_size": cfg["step_size"], "gamma": cfg["gamma"]}
    # Unset values are left out (TensorBoard shows a blank): "none" beside numbers would make
    # the whole column a string. Dicts (augment) become one JSON string.
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
            for k, v in hp.items() if v is not None}


def _png(pixels) -> bytes:
    """uint8 (H, W, C) as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def _sample_grid(x, n: int = 64, min_side: int = 32) -> bytes:
    """Up to `n` training images spread evenly over the set (no random draw: the run's random
    streams stay untouched), 8 to a row with 1-pixel gaps, small images scaled up by whole
    pixels so 8x8 digits are not a smudge."""
    import numpy as np

    from cnnkit.data.rows import as_array  # a mapped set's split: only the picks are read

    x = as_array(x.cpu() if hasattr(x, "cpu") else x)  # (N, H, W, C) uint8
    pick = np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int)
    tiles = x[pick]
    k = max(1, min_side // max(x.shape[1:3]))
    tiles = tiles.repeat(k, axis=1).repeat(k, axis=2)
    count, h, w, c = tiles.shape
    cols = min(8, count)
    rows = -(-count // cols)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = tile
    return _png(grid)


def _confusion_png(trainer, x_val, y_val) -> bytes:
    """The validation split's confusion matrix, drawn as the run's confusion_matrix.png is."""
    import tempfile

    import numpy as np

    from cnnkit.model.outputs import predicted_class
    from cnnkit.model.provided import provided  # cnnkit.look.plots's, which train may not import

    plot_confusion_matrix = provided("plot_confusion_matrix")

    logits = trainer.predict_logits(x_val)  # (N, K)
    pred = predicted_class(logits, trainer.model.net.output_activation).numpy()
    k = trainer.num_classes
    y = np.asarray(y_val.cpu() if hasattr(y_val, "cpu") else y_val)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    names = getattr(trainer.model, "class_names", None)
    with tempfile.TemporaryDirectory() as tmp:  # plots write files; TensorBoard wants the bytes
        return plot_confusion_matrix(cm, names, Path(tmp) / "cm.png").read_bytes()


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

