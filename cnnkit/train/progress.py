"""What the user sees while training: a live bar per epoch on a terminal, then one Keras-like
line per epoch. In a pipe or CI there is no bar and no escape code, only the lines; verbose 0
prints nothing.

    Epoch 3/20 - 4.1s - loss: 0.3012 - accuracy: 0.8912 - val_loss: 0.3310 - val_accuracy: 0.8790
"""
from __future__ import annotations

import sys
import time

LINE_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
REFRESH_S = 0.1  # bar redraws at most this often, so the batch loop rarely syncs for it


def epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs.get('time', 0.0):.1f}s"]
    parts += [f"{k}: {logs[k]:.4f}" for k in LINE_KEYS if k in logs]
    return " - ".join(parts)


class Progress:
    def __init__(self, verbose: int, epochs: int, stream=None):
        self.stream = stream or sys.stdout
        self.verbose, self.epochs = verbose, epochs
        self.live = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = self._task = None
        self._last = 0.0

    @property
    def wants_batches(self) -> bool:
        return self.live

    def epoch_begin(self, epoch: int, steps: int) -> None:
        if not self.live:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                   TimeRemainingColumn)

        self._bar = Bar(TextColumn(f"Epoch {epoch + 1}/{self.epochs}"), BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=Console(file=self.stream), transient=True)
        self._task = self._bar.add_task("", total=steps, info="")
        self._bar.start()
        self._last = 0.0

    def due(self) -> bool:
        """True when the bar should redraw now (the caller then computes the running loss)."""
        return self.live and time.perf_counter() - self._last >= REFRESH_S

    def batch(self, done: int, info: str) -> None:
        self._last = time.perf_counter()
        self._bar.update(self._task, completed=done, info=info)

    def abort(self) -> None:
        """Take the bar away without an epoch line (the epoch did not complete)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def epoch_end(self, epoch: int, logs: dict) -> None:
        self.abort()
        if self.verbose:
            print(epoch_line(epoch, self.epochs, logs), file=self.stream, flush=True)

    def say(self, message: str) -> None:
        if self.verbose:
            print(message, file=self.stream, flush=True)
