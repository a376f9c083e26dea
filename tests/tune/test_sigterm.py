"""SIGTERM (a `kill`, a job scheduler) ends `cnnkit train` and `cnnkit tune` as Ctrl+C does:
one line (train's names the command that continues it), exit status 130, and a run or study that --resume continues from its last epoch."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

from cnnkit.cli import main
from _child import pause_after_epoch, wait_for_line
from _tune_helpers import cnnkit_child, pause_in_trial, write_space


def _terminated(child: subprocess.Popen, line: str = "cnnkit: interrupted") -> str:
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 130  # as Ctrl+C: not killed by the signal (-15)
    err = child.stderr.read().decode()
    assert err.splitlines() == [line], err
    return err


def _epochs(run) -> int:
    with open(run / "history.csv") as f:
        return len(list(csv.DictReader(f)))


def test_sigterm_ends_train_with_a_line_and_a_resumable_run(tmp_path, capsys):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", pause_after_epoch(1), "train", "--model",
                              "seed003-cnn", "--dataset", "digits", "--epochs", "3", "--limit",
                              "300", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for_line(child, "saved epoch 1"), child.stderr.read().decode()
    _terminated(child, f"cnnkit: interrupted; continue it with: cnnkit train --resume {out}")
    assert main(["train", "--resume", str(out)]) == 0
    assert "Resuming" in capsys.readouterr().out and _epochs(out) == 3


def test_sigterm_ends_tune_with_a_line_and_a_resumable_study(tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", {"lr": [0.01]}, base={"epochs": 2})
    out = tmp_path / "study"
    child = cnnkit_child("tune", str(space), "--sampler", "grid", "--pruner", "none", "--quiet",
                         "--out", str(out), script=pause_in_trial("trials/0000", 1))
    assert wait_for_line(child, "paused"), child.stderr.read().decode()
    _terminated(child)
    assert main(["tune", "--resume", str(out), "--quiet"]) == 0
    run = out / "trials" / "0000"
    assert _epochs(run) == 2  # continued from its saved epoch, not started again
    assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1
