"""kill -9 of a real `cnnkit tune`, then the same command: no finished trial lost or repeated,
and the interrupted trial continues its run from its last finished epoch."""
from __future__ import annotations

import csv
import json
import os
import signal

import cnnkit
from cnnkit.cli import main
from _child import wait_for_line
from _tune_helpers import BASE, cnnkit_child, pause_in_trial, write_space

SPACE = {"lr": {"log_uniform": [3e-3, 3e-2]}, "batch_size": [64, 128]}



def _rows(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_kill_9_then_the_same_command_resumes_the_interrupted_trial_from_its_state(
        tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", SPACE, base={"epochs": 3})
    out = tmp_path / "study"
    argv = ["tune", str(space), "--sampler", "random", "--trials", "3", "--seed", "3",
            "--pruner", "none", "--out", str(out)]
    child = cnnkit_child(*argv, script=pause_in_trial("trials/0001", 1))
    try:
        assert wait_for_line(child, "paused"), child.stderr.read().decode()
        # a second tune into the same study directory is refused while the first lives
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"is in use by another cnnkit process (pid {child.pid}): one study per " \
               "directory" in err and err.count("\n") == 1
        first = out / "trials" / "0000"
        done_before = (first / "metrics.json").read_bytes(), (first / "metrics.json").stat().st_mtime_ns
        epoch_1 = (out / "trials" / "0001" / "history.csv").read_text().splitlines()
        assert len(epoch_1) == 2  # header + epoch 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "Re-queued trial 1, interrupted before: each continues from its last finished epoch" in said
    rows = _rows(out)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(complete) == 3 and len({r["dir"] for r in complete}) == 3
    assert [(r["number"], r["state"]) for r in rows][:2] == [("0", "COMPLETE"), ("1", "FAIL")]
    retry = next(r for r in rows if r["retry_of"] == "1")
    assert retry["state"] == "COMPLETE" and retry["dir"] == "trials/0001"

    # trial 0 was not run again
    assert ((first / "metrics.json").read_bytes(),
            (first / "metrics.json").stat().st_mtime_ns) == done_before
    assert "resumed" not in json.loads((first / "config.json").read_text())
    # trial 1 continued from its state: epoch 1 as it was, then epochs 2 and 3
    interrupted = out / "trials" / "0001"
    history = (interrupted / "history.csv").read_text().splitlines()
    assert len(history) == 4 and history[:2] == epoch_1
    assert len(json.loads((interrupted / "config.json").read_text())["resumed"]) == 1

    # the same seed, uninterrupted, draws the same parameters (random: whatever the results)
    clean = cnnkit.tune({"base": {**BASE, "epochs": 1}, "space": SPACE}, n_trials=3, sampler="random", seed=3, pruner="none",
                        verbose=0)
    assert [(float(r["lr"]), int(r["batch_size"])) for r in complete] == [
        (t["params"]["lr"], t["params"]["batch_size"]) for t in clean.trials]

    # --resume runs the study on with its own settings, here to a larger budget
    assert main(["tune", "--resume", str(out), "--trials", "4", "--quiet"]) == 0
    assert sum(r["state"] == "COMPLETE" for r in _rows(out)) == 4


def test_kill_9_in_the_last_trial_then_the_same_command_finishes_it(tmp_path, capsys):
    """The interrupted trial is the budget's last: its re-queued copy must still run (it was
    counted as the budget's last trial and left WAITING, and the command exited 0)."""
    space = write_space(tmp_path / "space.yaml", SPACE)  # 2 epochs a trial
    out = tmp_path / "study"
    argv = ["tune", str(space), "--sampler", "random", "--trials", "2", "--seed", "3",
            "--pruner", "none", "--out", str(out)]
    child = cnnkit_child(*argv, script=pause_in_trial("trials/0001", 1))
    try:
        assert wait_for_line(child, "paused"), child.stderr.read().decode()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    assert main(argv) == 0
    assert "Re-queued trial 1, interrupted before" in capsys.readouterr().out
    rows = _rows(out)
    assert [(r["number"], r["state"], r["retry_of"], r["dir"]) for r in rows] == [
        ("0", "COMPLETE", "", "trials/0000"), ("1", "FAIL", "", "trials/0001"),
        ("2", "COMPLETE", "1", "trials/0001")]
    # trial 1 continued its run from its state: epoch 1 as it was, then epoch 2
    interrupted = out / "trials" / "0001"
    assert len((interrupted / "history.csv").read_text().splitlines()) == 3
    assert len(json.loads((interrupted / "config.json").read_text())["resumed"]) == 1
    # the study is done: the same command again runs nothing more
    assert main(argv) == 0
    assert "Re-queued" not in capsys.readouterr().out and len(_rows(out)) == 3
