"""Search and cross-validation, on Optuna: every trial and every fold an ordinary cnnkit run.

    space.py    the search space file: parse, check, apply a trial's parameters to a RunSpec
    study.py    cnnkit.tune(...): create or resume a study, run its workers, summarize
    worker.py   one worker's loop: ask, run the trial (cnnkit.run), tell
    storage.py  Optuna's storages (journal file, PostgreSQL), with heartbeats on each
    cv.py       cnnkit.cross_validate(spec, folds=5): stratified k-fold, each fold a run
    report.py   trials.csv, best.yaml, plots, report.html
    live.py     the live table

Optuna is imported only inside these modules' functions: `cnnkit --help` stays fast.
"""
from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    """`cnnkit.tune` is both this package and the function `cnnkit.tune(space, ...)`: importing
    a submodule (`cnnkit.tune.space`) binds the package to the name `tune` on `cnnkit`, and the
    call must keep working after that."""

    def __call__(self, *args, **kwargs):
        from cnnkit.tune.study import tune

        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
