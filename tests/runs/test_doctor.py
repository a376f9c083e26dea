"""`cnnkit doctor RUN` (issue 30, item 1): each problem a run can show yields exactly its code,
with one line saying what the figures show and a next command that the CLI accepts; a healthy
run yields none. The same findings end `train` and sit in metrics.json and both reports."""
import json
import math
import shlex

import pytest
import torch

import cnnkit
from cnnkit.cli import build_parser, main
from cnnkit.data import load_dataset
from cnnkit.data.checks import cross_duplicates
from cnnkit.io.rundir import RunDir
from cnnkit.runs.doctor import CODES, diagnose

CLASSES = [str(i) for i in range(10)]
FALLING = [1.0, 0.6, 0.45, 0.38, 0.34, 0.32, 0.31, 0.305, 0.303, 0.302]
VAL_FLAT = [0.9, 0.6, 0.5, 0.45, 0.42, 0.41, 0.405, 0.403, 0.402, 0.4025]


def healthy() -> dict:
    """The files of a run that went well: its curves level off, test near train accuracy."""
    return {
        "config": {"options": {"model": "seed003-cnn", "dataset": "digits",
                               "train": {"epochs": 10, "batch_size": 32}},
                   "resolved": {"dataset": {"name": "digits", "class_names": CLASSES},
                                "model_note": None}},
        "history": {"loss": FALLING, "val_loss": VAL_FLAT, "lr": [0.001] * 10},
        "metrics": {"test_accuracy": 0.93, "final_accuracy": 0.95, "stop_reason": None,
                    "batch_norm": {"steps": 450, "recomputed": None, "unsettled": False},
                    "threads": {"threads": 2, "used": {"2": 450}, "changes": []},
                    "data_checks": {"class_counts": [144] * 10, "test_images": 360,
                                    "duplicates": 0, "duplicate_pairs": []}},
    }


def write_run(path, files: dict) -> RunDir:
    run = RunDir(path)
    run.path.mkdir(parents=True)
    run.write_config(files["config"])
    h = files["history"]
    cols = list(h)
    lines = [",".join(["epoch"] + cols)] + [
        ",".join([str(i)] + [repr(h[c][i]) for c in cols]) for i in range(len(h[cols[0]]))]
    (run.path / "history.csv").write_text("\n".join(lines) + "\n")
    run.write_metrics(files["metrics"])
    return run


def rising_val(f):
    f["history"]["val_loss"] = [0.9, 0.6, 0.5, 0.48, 0.5, 0.55, 0.6, 0.66, 0.7, 0.75]


def still_falling(f):
    f["history"]["val_loss"] = [0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.48, 0.46, 0.45, 0.43]


def nan_loss(f):
    f["history"]["loss"] = [2.3, 5.1, math.nan]
    f["history"]["val_loss"] = [2.3, 9.0, math.nan]
    f["history"]["lr"] = [0.5] * 3
    f["metrics"]["stop_reason"] = "loss diverged (nan) in epoch 3"


def loss_rising(f):
    f["history"]["loss"] = [2.3, 2.9, 3.4, 4.0]
    f["history"]["val_loss"] = [2.4, 3.0, 3.6, 4.2]
    f["history"]["lr"] = [0.2] * 4


def bn(f):
    f["metrics"]["batch_norm"] = {"steps": 12, "recomputed": None, "unsettled": True}


def gap(f):
    f["metrics"].update(final_accuracy=0.61, test_accuracy=0.10)


def imbalanced(f):
    f["metrics"]["data_checks"]["class_counts"] = [300] + [144] * 8 + [100]


def duplicates(f):
    f["metrics"]["data_checks"].update(duplicates=30, duplicate_pairs=[[0, 7], [4, 90]])


def reshaped(f):
    f["config"]["resolved"]["model_note"] = (
        "preset fast-cnn-dense is defined for 28×28×1 images and 10 classes; rebuilt with the "
        "same layers for digits's 8×8×1 images and 10 classes")


def threads(f):
    f["metrics"]["threads"]["used"] = {"1": 400, "2": 50}


CASES = {"overfit": rising_val, "undertrained": still_falling, "diverged": nan_loss,
         "diverged-rising": loss_rising, "bn-unsettled": bn, "train-test-gap": gap,
         "imbalanced": imbalanced, "duplicates": duplicates, "preset-reshaped": reshaped,
         "threads-dropped": threads}


def test_a_healthy_run_has_no_finding(tmp_path, capsys):
    run = write_run(tmp_path / "ok", healthy())
    assert diagnose(run) == []
    assert main(["doctor", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"{run}: no problems found"


@pytest.mark.parametrize("case", CASES)
def test_each_problem_yields_exactly_its_code(tmp_path, case):
    files = healthy()
    CASES[case](files)
    findings = diagnose(write_run(tmp_path / case, files))
    assert [f["code"] for f in findings] == [case.removesuffix("-rising")]
    assert findings[0]["code"] in CODES and findings[0]["message"]


def test_findings_say_the_figures_and_a_command_the_cli_takes(tmp_path, capsys):
    files = healthy()
    for case in ("overfit", "bn-unsettled", "train-test-gap", "imbalanced", "threads-dropped"):
        CASES[case](files)
    run = write_run(tmp_path / "r", files)
    assert main(["doctor", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_code = {f["code"]: f for f in out["findings"]}
    assert list(by_code) == ["overfit", "bn-unsettled", "train-test-gap", "imbalanced",
                             "threads-dropped"]
    assert "from 0.4800 (epoch 4) to 0.7500 (epoch 10)" in by_code["overfit"]["message"]
    assert "--early-stopping 3" in by_code["overfit"]["next"]
    assert "training accuracy 0.6100 but test accuracy 0.1000" in by_code[
        "train-test-gap"]["message"]
    assert "class 0 has 300" in by_code["imbalanced"]["message"]
    assert "400 of 450 steps" in by_code["threads-dropped"]["message"]
    parser = build_parser()
    for f in out["findings"]:  # each next command is one the command line accepts
        argv = shlex.split(f["next"])
        assert argv[0] == "cnnkit"
        parser.parse_args(argv[1:])
    assert main(["doctor", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l.split(":")[0] for l in lines] == list(by_code) and all("; try: cnnkit " in l
                                                                     for l in lines)


def test_the_next_rate_is_a_tenth_of_the_one_used(tmp_path):
    files = healthy()
    nan_loss(files)
    (finding,) = diagnose(write_run(tmp_path / "d", files))
    assert "in epoch 3" in finding["message"] and "--lr 0.05 " in finding["next"]


def test_near_duplicates_across_train_and_test_are_found():
    x = load_dataset("digits").x_train
    train, test = x[:1000], x[1000:1200].clone()
    assert cross_duplicates(train, test) == []  # two different 1s are not the same picture
    test[:20] = train[100:120]  # exact copies
    noisy = train[200:220].to(torch.int16) + torch.randint(-1, 2, train[200:220].shape)
    test[20:40] = noisy.clamp(0, 255).to(torch.uint8)  # copies one grey level off here and there
    found = dict(cross_duplicates(train, test))
    assert all(found[i] == 100 + i for i in range(20))
    assert sum(found.get(20 + i) == 200 + i for i in range(20)) >= 18
    assert set(found) <= set(range(40))


def test_a_real_run_ends_with_its_findings(tmp_path, capsys):
    r = cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=1, batch_size=64,
                                  seed=1, verbose=1, out=str(tmp_path / "one")))
    said = [l.removeprefix("Doctor: ") for l in capsys.readouterr().out.splitlines()
            if l.startswith("Doctor: ")]
    findings = r.metrics["doctor"]
    assert "undertrained" in [f["code"] for f in findings]  # one epoch only
    assert said == [f"{f['code']}: {f['message']}; try: {f['next']}" for f in findings]
    run = RunDir(r.run_dir)
    assert diagnose(run) == findings
    md = (run.path / "report.md").read_text()
    assert all(f"- {line}" in md for line in said)
    html = (run.path / "report.html").read_text()
    assert 'id="doctor"' in html and "one epoch only" in html
    # a run without data_checks (an older one): the data loaded again gives the same findings
    metrics = dict(run.metrics)
    checks = metrics.pop("data_checks")
    run.write_metrics(metrics)
    assert diagnose(RunDir(run.path)) == findings
    assert checks["duplicates"] == 0 and sum(checks["class_counts"]) == 1437
