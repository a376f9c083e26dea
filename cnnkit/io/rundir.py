"""The run directory: the one type that knows a run's file names and reads and writes them.

    run = RunDir("runs/a")
    run.options, run.resolved, run.history, run.metrics      # config.json, history.csv, metrics.json
    run.state_dir, run.best, run.last, run.model             # state/, best/, last/, model/
    with run.lock(): ...                                     # .lock: one process per directory

The lock is `flock` on DIR/.lock, held by the open file, so the kernel drops it when the
process dies, however it dies (kill -9 included): a stale lock file is harmless and nobody has
to delete anything by hand. The file records the holder's pid for the message. POSIX only;
where fcntl is missing (Windows) runs are not locked. A study's folder takes the same lock.

Everything that looks at a run (cnnkit.run and resume, evaluate, report.html, `cnnkit runs`
and compare, serve, the data-parallel launcher, cross-validation) goes through here, so the
names below are written once. A run directory is read, never trusted: each reader names the
file and what is wrong with it in one line.

Its hygiene too: `check_fresh` before a new run's first write, `clear_unstarted` for what a run
that never completed an epoch left, `recover` for what a kill between two renames or in the
middle of a write left.
"""
from __future__ import annotations

import contextlib
import csv
import os
import shutil
from functools import cached_property
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text, recover_dir

CONFIG, HISTORY, METRICS = "config.json", "history.csv", "metrics.json"
STATE, BEST, LAST = "state", "best", "last"
MODEL = "model"  # the model as the run began, which a resume builds (cnnkit.runs.held)
REPORT_MD, REPORT_HTML, CURVES = "report.md", "report.html", "curves.png"
RELIABILITY = "reliability.png"  # the test split's reliability diagram (calibration)
LOCK_FILE = ".lock"
PREDICTIONS = "predictions.npz"  # in best/: what report.html shows of the best model's test run
# Files a run writes before its first epoch is complete; a directory holding only these (plus
# cnnkit's temporary files) was never really started and may be started afresh.
TENSORBOARD = "tensorboard"  # --tensorboard event files
SKIPPED = "skipped.txt"  # the data's unreadable files, one a line (the console names a few)
LR_FIND = "lr_find.png"  # --lr find: the finder's loss against the rate, drawn before training
BEFORE_FIRST_EPOCH = (CONFIG, HISTORY, TENSORBOARD, SKIPPED, MODEL, LR_FIND)


class RunDir:
    """One run directory. Reading properties are cached: make a new RunDir to see new files."""

    def __init__(self, path):
        self.path = Path(path)
        self.state_dir, self.best, self.last, self.model = (
            self.path / n for n in (STATE, BEST, LAST, MODEL))

    def __str__(self) -> str:  # messages name the directory as the user gave it
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:  # the run's pictures and reports
        return self.path / name

    # -- what it holds ---------------------------------------------------------------------------
    def is_run(self) -> bool:
        """A run's own folder: it has its config.json."""
        return (self.path / CONFIG).is_file()

    def has_model(self) -> bool:
        return self.is_run() and self.best.is_dir()

    def started(self) -> bool:
        """True once a run has completed an epoch (its state, or the state cut between renames)."""
        return any((self.path / name / "state.json").is_file() for name in (STATE, ".state.old"))

    def saved_epoch(self) -> int | None:
        """The last completed epoch its state holds, None where there is none to read."""
        state = self.saved_state()
        return None if state is None else state["epoch"]

    def saved_state(self) -> dict | None:
        """{"epoch": the last completed epoch, "stop_reason": why training stopped early (an
        early stop, a divergence) or None} from its state; None where there is none to read."""
        from cnnkit.io.bounded import MAX_STATE_BYTES, read_bounded

        for folder in (self.state_dir, self.path / ".state.old"):  # .old: cut between renames
            try:  # bounded: a state.json nested thousands deep is no state, not a RecursionError
                state = read_bounded(folder / "state.json", "json", "training state",
                                     MAX_STATE_BYTES, nonfinite=True)
                reason = (state.get("stop_reason") or "stopped") if state.get("stop_training") \
                    else None
                return {"epoch": int(state["epoch"]), "stop_reason": reason and str(reason)}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):  # CnnkitError
                continue  # is a ValueError; AttributeError: a state.json that is no mapping
        return None

    @cached_property
    def config(self) -> dict:
        """The whole of config.json: "options" (the resolved spec), "resolved", "command"..."""
        from cnnkit.io.bounded import read_bounded

        if not self.is_run():
            raise CnnkitError(f"{self.path}: not a run directory (no {CONFIG})")
        cfg = self.path / CONFIG
        data = read_bounded(cfg, "json", "run configuration", label="corrupt run configuration")
        if not isinstance(data, dict) or "options" not in data:
            raise CnnkitError(f"{cfg}: corrupt run configuration (missing key 'options')")
        if not isinstance(data["options"], dict):
            raise CnnkitError(f"{cfg}: corrupt run configuration (options is not a mapping)")
        return data

    @property
    def options(self) -> dict:
        """config.json's "options": the resolved RunSpec, nested form."""
        return self.config["options"]

    @property
    def resolved(self) -> dict:
        """config.json's "resolved": dataset, splits, model summary, threads, kernels."""
        return self.config.get("resolved") or {}

    @property
    def started_at(self) -> float:
        """When the run began: recorded in config.json (copies keep it, unlike mtimes)."""
        started = self.config.get("started")
        return started if isinstance(started, (int, float)) else (self.path / CONFIG).stat().st_mtime

    @cached_property
    def history_rows(self) -> list[dict]:
        """history.csv, one {column: float} per finished epoch; no file: no epochs."""
        path = self.path / HISTORY
        if not path.is_file():  # killed before its first epoch ended
            return []
        rows = []
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    rows.append({k: float(v) for k, v in row.items() if k is not None and v != ""})
                except (TypeError, ValueError):
                    raise CnnkitError(f"{path}: line {line} is not numbers") from None
        return rows

    @property
    def history(self) -> dict[str, list]:
        """history.csv as columns (None where an epoch has no value)."""
        keys = dict.fromkeys(k for row in self.history_rows for k in row)
        return {k: [row.get(k) for row in self.history_rows] for k in keys}

    @cached_property
    def metrics(self) -> dict | None:
        """metrics.json; None while the run is unfinished (or was killed)."""
        from cnnkit.io.bounded import read_bounded

        path = self.path / METRICS
        if not path.is_file():
            return None
        data = read_bounded(path, "json", "run metrics", nonfinite=True,  # a NaN loss is a result
                            label="corrupt run metrics")
        if not isinstance(data, dict):
            raise CnnkitError(f"{path}: corrupt run metrics (not a JSON object)")
        return data

    def holds_run_files(self) -> bool:
        """A folder without config.json that still holds a run's other files (a broken run)."""
        return any((self.path / name).exists() for name in (HISTORY, METRICS, STATE))

    def predictions(self) -> dict | None:
        """best/predictions.npz (what report.html shows of the best model's test run); None
        where the run has not reached its end."""
        import zipfile

        import numpy as np

        path = self.best / PREDICTIONS
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise CnnkitError(f"{path}: corrupt saved predictions ({e}); delete the file and "
                              "cnnkit report evaluates the best model again") from None

    def processes(self) -> int | None:
        """How many processes trained the run (config.json), None where unknown."""
        try:
            n = self.resolved["processes"]
        except (CnnkitError, OSError, KeyError, TypeError):
            return None
        return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None

    def test_accuracy(self) -> float | None:
        """metrics.json's test accuracy; None without a finished, readable run."""
        try:
            value = (self.metrics or {}).get("test_accuracy")
        except (CnnkitError, OSError):
            return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else None

    # -- writing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, what: str = "run"):
        """Hold the directory's lock for a block: a CnnkitError if another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        path = self.path / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise CnnkitError(f"{self} is in use by another cnnkit process (pid {holder}): "
                                  f"one {what} per directory; wait for it to finish, or choose "
                                  "another out") from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as e:  # a full disk: name the lock's folder, not just "no space left"
                raise OSError(e.errno, e.strerror, str(path)) from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.path / CONFIG, config)
        self.__dict__.pop("config", None)

    def record_resume(self, options: dict, command) -> None:
        """A resumed run that trains for more epochs (or elsewhere) says so in its config.json,
        so the file still repeats the run it describes; each resume's command is kept."""
        config = dict(self.config, options=options)
        config["resumed"] = [*config.get("resumed", []), command]
        self.write_config(config)

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.path / METRICS, metrics)
        self.__dict__.pop("metrics", None)

    def write_predictions(self, arrays: dict) -> None:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.best / PREDICTIONS, buf.getvalue())

    def update_best_json(self, name: str, update) -> None:
        """A JSON file of best/ (its model description) read, changed by `update(dict)` and
        written back atomically; best/'s weights and predictions stay as they are."""
        from cnnkit.io.bounded import read_bounded

        path = self.best / name
        data = read_bounded(path, "json", "saved model description",
                            label="corrupt saved model description")
        if not isinstance(data, dict):
            raise CnnkitError(f"{path}: corrupt saved model description (not a mapping)")
        update(data)
        atomic_write_json(path, data)

    def write_text(self, name: str, text: str) -> Path:
        """report.md, report.html: whole files, written atomically."""
        return atomic_write_text(self.path / name, text)

    # -- hygiene -----------------------------------------------------------------------------------
    def _before_first_epoch(self) -> tuple[str, ...]:
        # epoch 1's best/ is written just before its state/: a kill between the two leaves it,
        # but only a run's own folder (one with config.json) is allowed to hold it
        return BEFORE_FIRST_EPOCH + ((BEST,) if (self.path / CONFIG).exists() else ())

    def check_fresh(self, ask_lock: bool = True) -> None:
        """The directory may take a new run: it is absent, empty, or a run that never completed
        an epoch (killed early, or its loss diverged in epoch 1), which is then started afresh."""
        run_dir = self.path
        if run_dir.exists() and not run_dir.is_dir():
            raise CnnkitError(f"out={str(run_dir)!r} is a file, not a directory; choose another "
                              "out", option="out", value=str(run_dir))
        if not run_dir.exists():
            return
        if ask_lock and (run_dir / LOCK_FILE).exists():
            with self.lock():  # says so if another process is training here right now
                pass
        if (run_dir / CONFIG).exists() and self.started():
            raise CnnkitError(f"{run_dir} already holds a run; continue it with cnnkit train "
                              f"--resume {run_dir} (cnnkit.resume), or choose another out")
        keep = self._before_first_epoch()
        if any(p.name not in keep and not p.name.startswith(".") for p in run_dir.iterdir()):
            raise CnnkitError(f"{run_dir} exists and is not empty; choose another out")

    def clear_unstarted(self) -> None:
        """Remove what a never-started run left (checked by check_fresh), just before the new
        run writes its own config.json."""
        keep = self._before_first_epoch()
        for p in self.path.iterdir():
            if p.name in keep:  # config.json included: the new run writes its own
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        self._remove_temporaries()

    def recover(self) -> None:
        """Before a resume, under the lock: put back what a kill cut between two renames, then
        remove what it left half-written."""
        for path in (self.state_dir, self.best, self.last):
            recover_dir(path)
        self._remove_temporaries()

    def _remove_temporaries(self) -> None:
        # `.NAME.*.tmp`, `.curves.*.png`, a `.NAME.old` whose NAME is whole again: run
        # directories hold no hidden files of their own but the lock
        for p in self.path.iterdir():
            if p.name.startswith(".") and p.name != LOCK_FILE:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

