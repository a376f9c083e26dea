"""Studies and cross-validations as `cnnkit runs` lists them beside runs: one row each, with
its best figure, read from the files the folder holds (study.json and trials.csv; folds.json).

    group_row(Path("runs/study"))   # {"name", "kind": "study", "model", "dataset", "size",
                                    #  "best", "date", "path"}, or None: not a study or folds
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.look.compare import model_name

FOLDS = "folds.json"


def group_row(path: Path) -> dict | None:
    """A row for the study or cross-validation folder `path`; None for any other folder.
    A study or folds file that cannot be read raises CnnkitError (listed as unreadable)."""
    from cnnkit.search.study import SETTINGS

    if (path / SETTINGS).is_file():
        return _study_row(path)
    if (path / FOLDS).is_file():
        return _folds_row(path)
    return None


def _row(path: Path, kind: str, base: dict, size: str, best: str, when: float) -> dict:
    return {"name": path.name, "kind": kind, "model": model_name(base),
            "dataset": base.get("dataset"), "limit": base.get("limit"), "size": size,
            "best": best, "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)),
            "path": str(path)}


def _study_row(path: Path) -> dict:
    from cnnkit.search.study import SETTINGS, read_settings

    settings = read_settings(path)
    space = settings["space"]
    objective = space.get("objective") or {}
    metric = objective.get("metric", "val_accuracy")
    sign = -1 if objective.get("direction") == "minimize" else 1
    trials = _trials(path / "trials.csv")
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    best = max(done, key=lambda t: (sign * t["value"], -t["number"]), default=None)
    size = (f"{len(done)} of {settings.get('n_trials', len(trials))} trials "
            f"({settings.get('sampler')})")
    text = (f"{metric} {best['value']:.4f} (trial {best['number']})" if best is not None
            else "no finished trial")
    return _row(path, "study", space.get("base") or {}, size, text,
                (path / SETTINGS).stat().st_mtime)


def _trials(path: Path) -> list[dict]:
    if not path.is_file():  # written as the first trial ends
        return []
    rows = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                value = float(row["value"]) if row.get("value") else None
                rows.append({"number": int(row["number"]), "state": row["state"],
                             "value": value if value is None or math.isfinite(value) else None})
            except (KeyError, TypeError, ValueError):
                raise CnnkitError(f"{path}: line {line} is not a trial row") from None
    return rows


def _folds_row(path: Path) -> dict:
    from cnnkit.io.bounded import read_bounded

    data = read_bounded(path / FOLDS, "json", "cross-validation results", nonfinite=True,
                        label="corrupt cross-validation results")
    try:
        mean, std, k = data["mean"], data["std"], int(data["k"])
        best = ", ".join(f"{m} {mean[m]:.4f} ± {std[m]:.4f}"
                         for m in ("val_accuracy", "test_accuracy"))
        base = data["spec"]
    except (KeyError, TypeError, ValueError):
        raise CnnkitError(f"{path / FOLDS}: corrupt cross-validation results") from None
    return _row(path, "cv", base, f"{k} folds", best, (path / FOLDS).stat().st_mtime)
