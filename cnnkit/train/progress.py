"""What the user sees while training: a live bar per epoch on a terminal, then one Keras-like
line per epoch. In a Jupyter notebook (Colab, JupyterLab, VS Code) each epoch gets one output
that is updated in place: its bar while the epoch runs, its line once it is done. In a pipe or
CI there is no bar and no escape code, only the lines; verbose 0 prints nothing.

    Epoch 3/20 - 4.1s - loss: 0.3012 - accuracy: 0.8912 - val_loss: 0.3310 - val_accuracy: 0.8790

The Keras path (cnnkit.keras's fit) prints Keras's lines instead: `Epoch 3/20` as the epoch
begins, then `1500/1500 ━━━━━━━━━━━━━━━━━━━━ 4s 3ms/step - accuracy: 0.8912 - loss: 0.3012`.
"""
from __future__ import annotations

import contextlib
import html
import sys
import time

LINE_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
REFRESH_S = 0.1  # bar redraws at most this often, so the batch loop rarely syncs for it
BAR_WIDTH = 30  # characters of the notebook bar's text form


def epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs.get('time', 0.0):.1f}s"]
    parts += [f"{k}: {logs[k]:.4f}" for k in LINE_KEYS if k in logs]
    return " - ".join(parts)


def keras_line(steps: int, seconds: float, logs: dict, verbose: int) -> str:
    values = " - ".join(f"{k}: {logs[k]:.4f}" for k in sorted(logs))  # Keras 3's order
    bar = "━" * 20 + " " if verbose == 1 else "- "
    return f"{steps}/{steps} {bar}{seconds:.0f}s {seconds / max(steps, 1) * 1000:.0f}ms/step - {values}"


def in_notebook() -> bool:
    """True inside a Jupyter kernel: its stdout is no terminal, but it shows outputs that can
    be updated in place. Colab's shell is a subclass of ipykernel's ZMQ shell."""
    if "ipykernel" not in sys.modules:  # never imports IPython for a terminal run
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and any(c.__name__ == "ZMQInteractiveShell"
                                     for c in type(shell).__mro__)


class NotebookBar:
    """One epoch's output cell: a bar (HTML <progress>, with a text form) updated in place."""

    def __init__(self, label: str, total: int):
        from IPython.display import display

        self.label, self.total = label, max(total, 1)
        self.handle = display(self._bundle(0, ""), raw=True, display_id=True)

    def _bundle(self, done: int, info: str) -> dict:
        filled = BAR_WIDTH * done // self.total
        text = (f"{self.label} [{'█' * filled}{'·' * (BAR_WIDTH - filled)}] "
                f"{done}/{self.total} {info}").rstrip()
        page = (f"<code>{html.escape(self.label)}</code> <progress value='{done}' "
                f"max='{self.total}' style='width:20em'></progress> "
                f"<code>{done}/{self.total} {html.escape(info)}</code>")
        return {"text/plain": text, "text/html": page}

    def update(self, done: int, info: str) -> None:
        self.handle.update(self._bundle(done, info), raw=True)

    def finish(self, line: str) -> None:
        self.handle.update({"text/plain": line}, raw=True)


class Progress:
    def __init__(self, verbose: int, epochs: int, stream=None, keras: bool = False):
        self.keras = keras  # Keras's lines, no live bar (cnnkit.keras)
        self.notebook = not keras and verbose == 1 and stream in (None, sys.stdout) \
            and in_notebook()
        self.stream = stream or sys.stdout
        self.verbose, self.epochs = verbose, epochs
        self.live = self.notebook or (not keras and verbose == 1
                                      and hasattr(self.stream, "isatty") and self.stream.isatty())
        self._bar = self._task = None
        self._last = 0.0

    def epoch_begin(self, epoch: int, steps: int) -> None:
        self._steps, self._t0 = steps, time.perf_counter()
        if self.keras and self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self.stream, flush=True)
        if not self.live:
            return
        self._last = 0.0
        if self.notebook:
            self._bar = NotebookBar(f"Epoch {epoch + 1}/{self.epochs}", steps)
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                   TimeRemainingColumn)

        self._bar = Bar(TextColumn(f"Epoch {epoch + 1}/{self.epochs}"), BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=Console(file=self.stream), transient=True)
        self._task = self._bar.add_task("", total=steps, info="")
        self._bar.start()

    def due(self) -> bool:
        """True when the bar should redraw now (the caller then computes the running loss)."""
        return self.live and time.perf_counter() - self._last >= REFRESH_S

    def batch(self, done: int, info: str) -> None:
        self._last = time.perf_counter()
        if self.notebook:
            self._bar.update(done, info)
        else:
            self._bar.update(self._task, completed=done, info=info)

    def abort(self) -> None:
        """Take the bar away without an epoch line (the epoch did not complete); a notebook's
        bar stays where it stopped."""
        if self._bar is not None and not self.notebook:
            self._bar.stop()
        self._bar = None

    def epoch_end(self, epoch: int, logs: dict) -> None:
        if self.keras:
            if self.verbose:
                print(keras_line(self._steps, time.perf_counter() - self._t0, logs,
                                 self.verbose), file=self.stream, flush=True)
            return
        line = epoch_line(epoch, self.epochs, logs)
        if self.notebook and self._bar is not None:
            self._bar.finish(line)  # the epoch's own output becomes its line
            self._bar = None
            return
        self.abort()
        if self.verbose:
            print(line, file=self.stream, flush=True)

    def say(self, message: str) -> None:
        """cnnkit's notes (stopped, restored, warnings); Keras's callbacks print their own.
        While a terminal bar is live the note goes above it, through the bar's own console:
        printed straight to the stream it would land inside the bar's line."""
        if not self.verbose or self.keras:
            return
        if self._bar is not None and not self.notebook:
            self._bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            print(message, file=self.stream, flush=True)


@contextlib.contextmanager
def working(what: str, stream=None):
    """A step that can take seconds (drawing a run's pictures and report, `cnnkit report`,
    `inspect`, export's parity check): on a terminal, a spinner with the step's name and the
    seconds so far, on stderr, gone when the step ends. In a pipe nothing: stdout stays the
    command's result (`--json` included) and stderr an error's one line."""
    stream = stream or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        yield
        return
    import threading

    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    # stdout printed meanwhile goes above the spinner when it is the same terminal, and
    # straight to its pipe or file when it is not
    same = sys.stdout.isatty() if hasattr(sys.stdout, "isatty") else False
    start, done = time.perf_counter(), threading.Event()
    spinner = Spinner("dots", f"{what} ...", style="green")
    with Live(spinner, console=Console(file=stream), transient=True, refresh_per_second=12.5,
              redirect_stdout=same, redirect_stderr=False):
        def tick():  # the seconds so far, once a second
            while not done.wait(1.0):
                spinner.update(text=f"{what} ... {time.perf_counter() - start:.0f} s")
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
