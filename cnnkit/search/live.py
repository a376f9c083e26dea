"""The live table of a study: trial, parameters, metric, state, time.

Drawn from the storage, not from the worker, so it shows every worker's trials (child
processes, other machines) alike. On a terminal it redraws in place (rich); in a pipe or a
file it prints one line per trial as the trial finishes.
"""
from __future__ import annotations

import math
import sys
import threading
import time

POLL_S = 1.0


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def row_of(t, now: float | None = None) -> dict:
    """A trial as the table and trials.csv show it."""
    start, end = t.datetime_start, t.datetime_complete
    if start is not None:
        end_s = end.timestamp() if end is not None else (now or time.time())
        duration = max(0.0, end_s - start.timestamp())
    else:
        duration = None
    return {"number": t.number, "state": t.state.name, "value": t.value,
            "std": t.user_attrs.get("std"), "params": dict(t.params), "duration_s": duration,
            "dir": (t.user_attrs.get("worker") or {}).get("dir"),
            "retry_of": t.system_attrs.get("failed_trial"),
            "error": t.user_attrs.get("error")}


def trial_rows(study, now: float | None = None) -> list[dict]:
    from cnnkit.search.worker import over_budget  # closed unrun

    return [row_of(t, now) for t in study.get_trials(deepcopy=False) if not over_budget(t)]


def trial_lines(rows: list[dict], metric: str, widths: list[int] | None = None) -> list[str]:
    """The table's lines, header first. `widths` (grown in place) keeps the columns of lines
    printed one trial at a time under each other."""
    head = ["trial", "parameters", metric, "state", "time"]
    table = [head] + [_cells(r, retry=True) for r in rows]
    seen = [max(len(r[i]) for r in table) for i in range(len(head))]
    if widths is None:
        widths = seen
    else:
        widths[:] = [max(a, b) for a, b in zip(widths or [0] * len(head), seen)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]


def _cells(r: dict, retry: bool) -> list[str]:
    """A trial's cells, as `head` names them; `retry`: the state says which trial it retries."""
    again = f" (retry of {r['retry_of']})" if retry and r["retry_of"] is not None else ""
    return [str(r["number"]), " ".join(f"{k}={_fmt(v)}" for k, v in r["params"].items()),
            _value(r), r["state"] + again,
            "" if r["duration_s"] is None else f"{r['duration_s']:.1f} s"]


def _params_width(space) -> int:
    """How wide the parameters column can get: each choice's widest value, ~10 characters
    for a number drawn from a range (4 significant digits, maybe an exponent)."""
    parts = [len(p.name) + 1 + (max(len(_fmt(v)) for v in p.values) if p.kind == "choice"
                                 else 10) for p in space.params]
    return sum(parts) + len(parts) - 1


def _value(r: dict) -> str:
    v = r["value"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4f}" + (f" ± {r['std']:.4f}" if r.get("std") is not None else "")


class Live:
    """`with Live(study, space):` shows the study's trials while the block runs."""

    def __init__(self, study, space, enabled: bool = True):
        self.study, self.space, self.enabled = study, space, enabled
        self.tty = sys.stdout.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._printed: set[int] = set()
        self._widths = [0, _params_width(space) if space is not None else 0, 0, 0, 0]

    def rows(self) -> list[dict]:
        return trial_rows(self.study, time.time())

    def _loop(self) -> None:
        if self.tty:
            from rich.live import Live as RichLive
            from rich.table import Table

            def render():
                table = Table(title=f"study: {self.space.metric} ({self.space.direction})")
                for h in ("trial", "parameters", self.space.metric, "state", "time"):
                    table.add_column(h)
                for r in self._rows_safe():
                    table.add_row(*_cells(r, retry=False))
                return table

            with RichLive(render(), refresh_per_second=2, transient=False) as live:
                while not self._stop.wait(POLL_S):
                    live.update(render())
                live.update(render())
            return
        while True:
            stopping = self._stop.wait(POLL_S)
            self._print_finished()
            if stopping:
                return

    def _rows_safe(self) -> list[dict]:
        try:
            return self.rows()
        except Exception:  # a storage hiccup: the next poll draws it
            return []

    def _print_finished(self) -> None:
        rows = [r for r in self._rows_safe() if r["state"] not in ("RUNNING", "WAITING")
                and r["number"] not in self._printed]
        if not rows:
            return
        lines = trial_lines(rows, self.space.metric, self._widths)
        if not self._printed:
            print(lines[0], flush=True)
        for r, line in zip(rows, lines[1:]):
            self._printed.add(r["number"])
            print(line + (f"  ({r['error']})" if r["error"] else ""), flush=True)

    def __enter__(self):
        if self.enabled:
            self._printed = {r["number"] for r in self._rows_safe()
                             if r["state"] not in ("RUNNING", "WAITING")}
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
