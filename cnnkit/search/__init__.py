"""Search and cross-validation (`cnnkit tune`, `cnnkit cv`), on Optuna: every trial and every
fold an ordinary cnnkit run.

    space.py    the search space file: parse, check, apply a trial's parameters to a RunSpec
    study.py    cnnkit.tune(...): create or resume a study, run its workers, summarize
    worker.py   one worker's loop: ask, run the trial (cnnkit.run), tell
    storage.py  Optuna's storages (journal file, PostgreSQL), with heartbeats on each
    cv.py       cnnkit.cross_validate(spec, folds=5): stratified k-fold, each fold a run
    report.py   trials.csv, best.yaml, plots, report.html
    live.py     the live table

Optuna is imported only inside these modules' functions: `cnnkit --help` stays fast. The
package is `search`, not `tune`, so that `cnnkit.tune` is the function alone.
"""
