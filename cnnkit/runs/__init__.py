"""Runs: a training run as one library call, `cnnkit.run(RunSpec) -> RunResult`.

    spec.py      RunSpec (every option of a run, one typed description) and RunResult
    recipes.py   a seed tutorial's whole training setup under one name
    run.py       check, load data, build the model, train, evaluate, write the run directory
    prepare.py   the run's data and splits and its model, fitted to them (before any write)
    held.py      what a run directory holds of its own for --resume: model/, checked state
    backbone.py  --backbone: a pretrained network's fine-tuning options and freeze schedule
    report.py    the end of a run: saved models, test evaluation, metrics.json, plots, report.md
    evaluate.py  a trained model (or a run's best) scored on a dataset split
    fit.py       `cnnkit.fit`: in memory, or a run of your own nn.Module with out=
    pages.py     report.html, `cnnkit runs` and `cnnkit compare`, drawn from run directories
    provenance.py  what a run ran on (versions, CPU, git commit, data CRC): config.json's ran_on
    doctor.py    `cnnkit doctor`: a run's problems, each with a code and the next command
    lr_find.py   `cnnkit lr-find` and `--lr find`: the learning-rate finder with a run's options
"""
