"""Runs: a training run as one library call, `cnnkit.run(RunSpec) -> RunResult`.

    spec.py      RunSpec (every option of a run, one typed description) and RunResult
    recipes.py   a seed tutorial's whole training setup under one name
    run.py       check, load data, build the model, train, evaluate, write the run directory
    report.py    the end of a run: saved models, test evaluation, metrics.json, plots, report.md
    evaluate.py  a trained model (or a run's best) scored on a dataset split
    fit.py       `cnnkit.fit`: in memory, or a run of your own nn.Module with out=
    pages.py     report.html, `cnnkit runs` and `cnnkit compare`, drawn from run directories
"""
