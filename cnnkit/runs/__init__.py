"""Runs: a training run as one library call, `cnnkit.run(RunSpec) -> RunResult`.

    recipes.py  a seed tutorial's whole training setup under one name
    run.py      validate, load data, build the model, train, evaluate, write the run directory
    report.py   the end of a run: saved models, test evaluation, metrics.json, plots, report.md
"""
