"""Keras's callbacks: the same classes cnnkit's Trainer runs (cnnkit.train.callbacks), with
Keras's argument names and hooks. A callback reaches the model as `self.model` (set before
training; `self.model.stop_training = True` stops it) and gets `on_epoch_end(epoch, logs)`
with `loss`, the compiled metrics and their `val_` twins."""
from __future__ import annotations

from cnnkit.train.callbacks import CSVLogger as CoreCSVLogger
from cnnkit.train.callbacks import (BackupAndRestore, Callback, EarlyStopping, History,
                                    LambdaCallback, ModelCheckpoint, MonitorCallback,
                                    ReduceLROnPlateau, TensorBoard, TerminateOnNaN)

__all__ = ["BackupAndRestore", "Callback", "CSVLogger", "EarlyStopping", "History",
           "LambdaCallback", "ModelCheckpoint", "MonitorCallback", "ReduceLROnPlateau",
           "TensorBoard", "TerminateOnNaN"]


class CSVLogger(CoreCSVLogger):
    """cnnkit's CSVLogger writing Keras's numbering: the first epoch's row says 0."""

    first_epoch = 0
