"""Keras's callbacks, with Keras's argument names and hooks: a callback reaches the model as
`self.model` (set before training; `self.model.stop_training = True` stops it) and gets
`on_epoch_end(epoch, logs)` with `loss`, the compiled metrics and their `val_` twins."""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError, one_of, out_of_range


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass


class History(Callback):
    """`model.fit` returns it: `.history` maps each logged name to its per-epoch values."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch = {}, []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


class _Monitor(Callback):
    def __init__(self, monitor, mode, min_delta=0.0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise one_of("mode", mode, ["auto", "min", "max"])
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.best = math.inf if mode == "min" else -math.inf

    def _better(self, current, reference) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise CnnkitError(f"{type(self).__name__} monitors {self.monitor!r}, which is not "
                              f"logged; logged: {', '.join(logs or {})}"
                              + (" (pass validation_data or validation_split)"
                                 if self.monitor.startswith("val_") else ""))
        return value


class EarlyStopping(_Monitor):
    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise out_of_range("patience", patience, "an integer >= 0")
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch, self.best_weights = 0, 0, 0, None
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if epoch < self.start_from_epoch or math.isnan(current):
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._better(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (`model.save(filepath)`: .keras, .h5, or a cnnkit directory) after every
    epoch, or only when `monitor` improves; `filepath` may hold `{epoch:02d}`, `{val_loss:.2f}`.
    `save_weights_only`: `model.save_weights(filepath)` (a `.weights.h5` file)."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode)
        if save_freq != "epoch":
            raise CnnkitError(f"ModelCheckpoint: save_freq={save_freq!r} is not supported; "
                              "valid: 'epoch'")
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise CnnkitError(f"ModelCheckpoint: with save_weights_only=True the filepath must "
                              f"end in .weights.h5; received {self.filepath!r}")
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)

    def on_epoch_end(self, epoch, logs=None):
        path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        if self.save_best_only:
            current = self._current(logs)
            if math.isnan(current) or not self._better(current, self.best):
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class ReduceLROnPlateau(_Monitor):
    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise out_of_range("factor", factor, "0 < factor < 1")
        self.factor, self.patience, self.verbose = float(factor), patience, verbose
        self.cooldown, self.min_lr = cooldown, float(min_lr)
        self.wait = self.cooldown_left = 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_left <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                if opt.learning_rate > self.min_lr:
                    opt.learning_rate = max(opt.learning_rate * self.factor, self.min_lr)
                    for g in opt.torch.param_groups:
                        g["lr"] = opt.learning_rate
                    if self.verbose > 0:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                              f"{opt.learning_rate:.4g}.")
                self.cooldown_left, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = str(filename), separator, append

    def on_train_begin(self, logs=None):
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            if not self.append or self._file.tell() == 0:
                self._file.write(self.separator.join(["epoch"] + self._keys) + "\n")
        self._file.write(self.separator.join([str(epoch)] + [repr(logs.get(k)) for k in self._keys])
                         + "\n")
        self._file.flush()

    def on_train_end(self, logs=None):
        self._file.close()


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None):
        super().__init__()
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end),
                         ("on_train_batch_begin", on_train_batch_begin),
                         ("on_train_batch_end", on_train_batch_end)):
            if fn is not None:
                setattr(self, name, fn)


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class TensorBoard(Callback):
    """Scalars per epoch in `log_dir/train` and `log_dir/validation`, tagged as Keras tags
    them (`epoch_loss`, `epoch_accuracy`), for `tensorboard --logdir`."""

    def __init__(self, log_dir="logs", **kwargs):
        super().__init__()
        from pathlib import Path

        self.log_dir, self._writers = Path(log_dir), {}

    def _writer(self, split):
        from cnnkit.train.tbevents import EventWriter

        if split not in self._writers:
            self._writers[split] = EventWriter(self.log_dir / split)
        return self._writers[split]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._writer("train").add_scalars(epoch + 1, {f"epoch_{k}": v for k, v in logs.items()
                                                      if not k.startswith("val_")})
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        if val:
            self._writer("validation").add_scalars(epoch + 1, val)
