"""A run directory's hygiene: is it fresh, was it ever started, what a killed process left.

`cnnkit.run` checks a directory with `check_fresh` before its first write, clears what a run
that never completed an epoch left (`clear_unstarted`), and on resume removes half-written
temporaries (`remove_temporaries`) after `recover_dir` has put back anything cut between renames.
"""
from __future__ import annotations

from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.runs.lock import LOCK_FILE, run_lock


# Files a run writes before its first epoch is complete; a directory holding only these (plus
# cnnkit's temporary files) was never really started and may be started afresh.
BEFORE_FIRST_EPOCH = ("config.json", "history.csv", "tensorboard")


def started(run_dir: Path) -> bool:
    """True once a run has completed an epoch (its state, or the state cut between renames)."""
    return any((run_dir / name / "state.json").is_file() for name in ("state", ".state.old"))


def _before_first_epoch(run_dir: Path) -> tuple[str, ...]:
    # epoch 1's best/ is written just before its state/: a kill between the two leaves it,
    # but only a run's own folder (one with config.json) is allowed to hold it
    return BEFORE_FIRST_EPOCH + (("best",) if (run_dir / "config.json").exists() else ())


def _leftovers(run_dir: Path) -> list[Path]:
    keep = _before_first_epoch(run_dir)
    return [p for p in run_dir.iterdir() if p.name not in keep and not p.name.startswith(".")]


def remove_temporaries(run_dir: Path) -> None:
    """What a killed process left half-written (`.NAME.*.tmp`, `.curves.*.png`, a `.NAME.old`
    whose NAME is whole again): run directories hold no hidden files of their own but the lock.
    Called under the lock, after recover_dir has put back anything cut between renames."""
    import shutil

    for p in run_dir.iterdir():
        if p.name.startswith(".") and p.name != LOCK_FILE:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def check_fresh(run_dir: Path, ask_lock: bool = True) -> None:
    """`run_dir` may take a new run: it is absent, empty, or a run that never completed an
    epoch (killed early, or its loss diverged in epoch 1), which is then started afresh."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CnnkitError(f"out={str(run_dir)!r} is a file, not a directory; choose another out",
                          option="out", value=str(run_dir))
    if not run_dir.exists():
        return
    if ask_lock and (run_dir / LOCK_FILE).exists():
        with run_lock(run_dir):  # says so if another process is training here right now
            pass
    if (run_dir / "config.json").exists() and started(run_dir):
        raise CnnkitError(f"{run_dir} already holds a run; continue it with cnnkit train "
                          f"--resume {run_dir} (cnnkit.resume), or choose another out")
    if _leftovers(run_dir):
        raise CnnkitError(f"{run_dir} exists and is not empty; choose another out")


def clear_unstarted(run_dir: Path) -> None:
    """Remove what a never-started run left (checked by check_fresh), just before the new
    run writes its own config.json."""
    import shutil

    keep = _before_first_epoch(run_dir)
    for p in run_dir.iterdir():
        if p.name in keep:  # config.json included: the new run writes its own
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    remove_temporaries(run_dir)
