"""Callbacks: one system, shaped like Keras's, for every way into the training loop.

A callback is a small object with no-op hooks. Before training, the Trainer calls
`set_model(model)` and `set_params({...})` and sets `self.trainer` (cnnkit's extras: the
schedule, `say`, `stop_reason`); then `on_train_begin`, `on_epoch_begin`,
`on_train_batch_begin` / `on_train_batch_end` (only callbacks that override them cost a host
sync per batch), `on_epoch_end(epoch, logs)` and `on_train_end`. To stop training, set
`self.model.stop_training = True` (as in Keras) or call `self.stop(reason)`.
Callbacks that remember something between epochs (a best value, a wait count, best weights)
expose `get_state()` / `set_state()` so a resumed run continues exactly where it stopped.
`cnnkit.keras.callbacks` names these same classes.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.fsutil import atomic_write_text
from cnnkit.train.hooks import MODES, Callback, History, MonitorCallback, overrides

__all__ = ["MODES", "BackupAndRestore", "CSVLogger", "Callback", "EarlyStopping", "History",
           "LambdaCallback", "ModelCheckpoint", "MonitorCallback", "ReduceLROnPlateau",
           "TensorBoard", "TerminateOnNaN", "overrides"]


class EarlyStopping(MonitorCallback):
    """Stop when `monitor` has not improved for `patience` epochs (Keras's arguments). With
    `restore_best_weights`, the model ends with the weights of its best epoch (as Keras 3)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(monitor, mode, min_delta, baseline)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise out_of_range("patience", patience, "an integer >= 0")
        self.patience, self.verbose = patience, verbose
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.set_state(None)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.resumed:  # Keras: each fit starts afresh; a resumed run goes on
            self.set_state(None)
        self.resumed = False

    def on_epoch_end(self, epoch, logs=None):
        current = self.current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.net_weights(), epoch  # as Keras 3
        self.wait += 1
        if self.improved(current):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.net_weights()
            if self.baseline is None or self.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.stop(f"early stopping: {self.monitor} has not improved for {self.wait} epochs "
                      f"(best {self.best:.4f} at epoch {self.best_epoch + 1})")

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            from cnnkit.model.saving import load_state

            # via load_state: best weights restored from a state saved by an earlier version
            # carry positional names
            load_state(self.model.net, self.best_weights, "the best epoch's weights")
            self.tell(f"Restored model weights from epoch {self.best_epoch + 1}, the best "
                      f"{self.monitor} ({self.best:.4f})")

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def set_state(self, state):
        """`None`: a fresh start; a saved state: a resumed run that goes on from it."""
        self.resumed = state is not None
        state = state or {"best": math.inf if self.mode == "min" else -math.inf, "wait": 0,
                          "best_epoch": None, "stopped_epoch": None, "best_weights": None}
        self.best, self.wait = state["best"], state["wait"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self.best_weights = state["best_weights"]


class ModelCheckpoint(MonitorCallback):
    """Save the model (`model.save(filepath)`: a cnnkit directory, .keras or .h5; atomic) after
    each epoch, or only when `monitor` improves with `save_best_only`. `filepath` may hold
    `{epoch:02d}` or `{val_loss:.3f}`. `save_weights_only`: `model.save_weights(filepath)`."""

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode)
        if save_freq != "epoch":
            raise one_of("ModelCheckpoint save_freq", save_freq, ["epoch"])
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise CnnkitError(f"ModelCheckpoint: with save_weights_only=True the filepath must "
                              f"end in .weights.h5; received {self.filepath!r}")
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        self.best_epoch: int | None = None

    path = property(lambda self: self.filepath)  # cnnkit's earlier name

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        if self.save_best_only:
            current = self.current(logs)
            if current is None or not self.improved(current):
                if self.verbose and current is not None:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best, self.best_epoch = current, epoch
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise out_of_range("factor", factor, "0 < factor < 1")
        self.factor, self.patience, self.cooldown = float(factor), int(patience), int(cooldown)
        self.verbose, self.min_lr = verbose, float(min_lr)
        self.wait = self.cooldown_left = 0
        self.resumed = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.resumed:  # Keras: each fit starts afresh; a resumed run goes on
            self.best = math.inf if self.mode == "min" else -math.inf
            self.wait = self.cooldown_left = 0
        self.resumed = False

    def on_epoch_end(self, epoch, logs=None):
        current = self.current(logs)
        if current is None:
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
                schedule.scale *= new_lr / lr  # the schedule keeps it: resume restores it
                schedule.apply()
                self.tell(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                          f"{new_lr:.4g}.")
            self.cooldown_left, self.wait = self.cooldown, 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    def set_state(self, state):
        self.best, self.wait, self.cooldown_left = state["best"], state["wait"], state["cooldown_left"]
        self.resumed = True


class CSVLogger(Callback):
    """One row per epoch (`epoch` then the logged values), rewritten atomically as each epoch
    ends, so the file is always complete and a resumed run continues it. `append`: keep the
    rows a file already has (Keras's argument). Epochs count from `first_epoch` (1 here; the
    Keras namespace's CSVLogger counts from 0, as Keras writes)."""

    first_epoch = 1

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.path, self.separator, self.append = Path(filename), separator, append
        self.rows: list[dict] = []
        self.resumed = False

    def on_train_begin(self, logs=None):
        if not self.resumed:  # a new fit: a new file, or the rows the file has (append)
            self.rows = []
            if self.append and self.path.is_file():
                with open(self.path, newline="") as f:
                    self.rows = list(csv.DictReader(f, delimiter=self.separator))
        self.resumed = False

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + self.first_epoch,
                          **{k: float(v) for k, v in (logs or {}).items()}})
        fields = list(dict.fromkeys(k for row in self.rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, delimiter=self.separator,
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def get_state(self):
        return {"rows": self.rows}

    def set_state(self, state):
        self.rows, self.resumed = [dict(r) for r in state["rows"]], True


class LambdaCallback(Callback):
    """Keras's: the hooks given as functions, e.g. `on_epoch_end=lambda epoch, logs: ...`."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None):
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end),
                         ("on_train_batch_begin", on_train_batch_begin),
                         ("on_train_batch_end", on_train_batch_end)):
            if fn is not None:
                setattr(self, name, fn)


class BackupAndRestore(Callback):
    """Keras's: the whole training state (weights, optimizer, schedule, history, callbacks:
    cnnkit's resumable state) written to `backup_dir` after every epoch; the same fit run again
    after an interruption (an exception, a kill) goes on from the last finished epoch, to the
    same numbers. Removed once training ends, unless `delete_checkpoint=False`."""

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint: bool = True):
        if save_freq != "epoch":
            raise one_of("BackupAndRestore save_freq", save_freq, ["epoch"])
        self.backup_dir, self.delete_checkpoint = Path(backup_dir), delete_checkpoint

    def restore(self, trainer) -> bool:
        """Called by the Trainer as fit starts: True when a backup was loaded."""
        from cnnkit.train.resume import restore_backup

        return restore_backup(trainer, self.backup_dir)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            import shutil

            shutil.rmtree(self.backup_dir, ignore_errors=True)


class TerminateOnNaN(Callback):
    """Stop as soon as a batch loss is NaN or infinite. The trainer then skips that epoch's
    end (no checkpoint, no saved state), so the last good checkpoint stays on disk."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            epoch = self.trainer.epoch + 1 if self.trainer is not None else "?"
            self.stop(f"the loss became {loss} at batch {batch + 1} of epoch {epoch}; training "
                      "stopped (lower the learning rate, or clip gradients with clip_norm)",
                      diverged=True)


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

    def __init__(self, log_dir="logs", **keras_options):
        self.log_dir = Path(log_dir)  # Keras's other options (histogram_freq, ...): no effect
        self._writers: dict = {}

    def _writer(self, split: str):
        from cnnkit.train.tbevents import EventWriter

        if split not in self._writers:
            self._writers[split] = EventWriter(self.log_dir / split)
        return self._writers[split]

    def on_train_begin(self, logs=None):
        from cnnkit.train.tbtabs import hparams, sample_grid

        if self.trainer.epoch > 0:  # resumed: the run's first session wrote these already
            return
        self._writer("").add_hparams(hparams(self.trainer))
        train = getattr(self.trainer, "train_data", None)  # None: an engine that keeps no data
        if train is not None:
            self._writer("train").add_image(0, "training_images", sample_grid(train[0]))

    def on_epoch_end(self, epoch, logs=None):
        train = {f"epoch_{k}": v for k, v in logs.items()
                 if not k.startswith("val_") and k not in ("lr", "time")}
        train["epoch_learning_rate"] = logs.get("lr", self.trainer.schedule.lr)
        self._writer("train").add_scalars(epoch + 1, train)
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        if val:
            self._writer("validation").add_scalars(epoch + 1, val)
        data = getattr(self.trainer, "validation_data", None)
        if data is not None:
            from cnnkit.train.tbtabs import confusion_png

            self._writer("validation").add_image(epoch + 1, "confusion_matrix",
                                                 confusion_png(self.trainer, *data))

    def on_train_end(self, logs=None):
        self._writer("").add_session_end("failure" if self.trainer.diverged else "success")
