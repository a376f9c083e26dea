"""A study end to end, in one process: real Optuna on its journal file, every trial a run."""
from __future__ import annotations

import csv
import json

import cnnkit
from cnnkit.cli import main
from _tune_helpers import BASE, write_space


def _rows(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_grid_runs_each_point_once_prunes_a_hopeless_trial_and_best_yaml_repeats_the_best(
        tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", {"lr": {"choice": [0.01, 0.02, 1e-7]}},
                        base={"seed": 0})
    out = tmp_path / "study"
    assert main(["tune", str(space), "--sampler", "grid", "--pruner", "median", "--out",
                 str(out)]) == 0
    shown = capsys.readouterr().out
    assert "trial  parameters" in shown and "PRUNED" in shown  # the table, as trials finish
    rows = _rows(out)
    assert [(r["number"], r["lr"]) for r in rows] == [("0", "0.01"), ("1", "0.02"), ("2", "1e-07")]
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED"]
    for name in ("best.yaml", "history.png", "importance.png", "report.html", "study.journal"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "http://" not in html.replace(
        "http-equiv", "")

    # the pruned trial's run directory says so, and it stopped after its first epoch
    pruned = out / "trials" / "0002"
    trial = json.loads((pruned / "trial.json").read_text())
    metrics = json.loads((pruned / "metrics.json").read_text())
    assert trial["state"] == "PRUNED" and metrics["stop_reason"].startswith("pruned by the search")
    assert metrics["epochs_run"] == 1

    # best.yaml is a RunSpec: training it again repeats the best trial to the last digit
    best = max(rows[:2], key=lambda r: float(r["value"]))
    assert main(["train", "--config", str(out / "best.yaml"), "--out", str(tmp_path / "again"),
                 "--quiet", "--artifacts", "metrics"]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    theirs = json.loads((out / "trials" / f"{int(best['number']):04d}" / "metrics.json").read_text())
    assert again["test_accuracy"] == theirs["test_accuracy"]
    assert again["best_val_accuracy"] == float(best["value"])


def test_a_grid_prunes_only_when_asked_and_few_trials_draw_no_importance(tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", {"lr": {"choice": [0.01, 1e-7]}},
                        base={"seed": 0})
    out = tmp_path / "study"
    assert main(["tune", str(space), "--sampler", "grid", "--quiet", "--out", str(out)]) == 0
    assert [r["state"] for r in _rows(out)] == ["COMPLETE", "COMPLETE"]  # 1e-7 ran its 2 epochs
    html = (out / "report.html").read_text()
    assert "pruner none" in html
    assert ("Parameter importance not drawn: 2 finished trials; parameter importance is drawn "
            "from 10 or more") in html
    assert html.count("data:image/png;base64") == 1  # history.png only


def test_the_same_seed_gives_the_same_trial_parameters(tmp_path):
    def params(seed, sampler="random"):
        s = cnnkit.tune({"base": {**BASE, "epochs": 1}, "space": {
            "lr": {"log_uniform": [1e-3, 3e-2]}, "batch_size": [32, 64, 128]}},
            n_trials=3, sampler=sampler, seed=seed, pruner="none", verbose=0)
        return [r["params"] for r in s.trials]

    first = params(7)
    assert len(first) == 3 and len({r["lr"] for r in first}) == 3
    assert params(7) == first
    assert params(8) != first


def test_folds_score_a_trial_by_the_mean_of_its_folds(tmp_path):
    out = tmp_path / "study"
    summary = cnnkit.tune({"base": {**BASE, "epochs": 1}, "space": {"lr": [0.01, 0.02]}},
                          sampler="grid", folds=2, pruner="none", out=out, verbose=0)
    assert [r["state"] for r in summary.trials] == ["COMPLETE", "COMPLETE"]
    trial = json.loads((out / "trials" / "0000" / "trial.json").read_text())
    values = trial["fold_values"]
    assert len(values) == 2 and trial["value"] == sum(values) / 2 and trial["std"] >= 0
    assert (out / "trials" / "0000" / "folds.png").is_file()
    for i in (1, 2):
        cfg = json.loads((out / "trials" / "0000" / f"fold-{i}" / "config.json").read_text())
        assert cfg["options"]["fold"] == {"k": 2, "index": i - 1, "seed": cfg["options"]["train"]["seed"]}
    assert _rows(out)[0]["std"] != ""
    assert summary.best_value == max(r["value"] for r in summary.trials)


def test_tpe_and_gp_search_with_a_model_after_their_random_start(tmp_path):
    space = {"base": {**BASE, "epochs": 1, "limit": 300},
             "space": {"lr": {"log_uniform": [1e-3, 3e-2]}, "label_smoothing": {"uniform": [0, 0.2]}}}
    for sampler in ("tpe", "gp"):
        runs = [cnnkit.tune(space, n_trials=6, sampler=sampler, seed=1, pruner="none", verbose=0)
                for _ in range(2)]
        assert [r["state"] for r in runs[0].trials] == ["COMPLETE"] * 6
        assert [r["params"] for r in runs[0].trials] == [r["params"] for r in runs[1].trials]


def test_optuna_is_imported_only_by_the_search_commands():
    import subprocess
    import sys

    code = ("import sys; from cnnkit.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('optuna', 'torch', 'sqlalchemy') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert shown.strip() == "[]"
