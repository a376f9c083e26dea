"""Ctrl+C (and SIGTERM) during `cnnkit train` says how to go on; `--resume` on a finished run says
there is nothing left to train and how to train longer, changing nothing."""
import json
import os
import shlex
import signal
import subprocess
import sys

import pytest

import cnnkit
from _child import pause_after_epoch, wait_for_line
from cnnkit.cli import main
from cnnkit.errors import CnnkitError

SMALL = ["--model", "seed003-cnn", "--dataset", "digits", "--batch-size", "64", "--seed", "3"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_train_prints_the_command_that_continues_it(tmp_path, signum):
    run = tmp_path / "my run"  # a space: the printed command must quote it
    proc = subprocess.Popen([sys.executable, "-c", pause_after_epoch(2), "train", *SMALL,
                             "--epochs", "3", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    paused = wait_for_line(proc, "saved epoch 2")
    proc.send_signal(signum)
    err = proc.communicate(timeout=120)[1].decode()
    assert paused, "the run finished before it could be interrupted"
    assert proc.returncode == 130
    command = f"cnnkit train --resume {shlex.quote(str(run))}"
    assert err.splitlines()[-1] == f"cnnkit: interrupted; continue it with: {command}"
    # the printed command, run as printed, finishes the run
    argv = shlex.split(command)
    assert argv[:2] == ["cnnkit", "train"]
    assert main([*argv[1:], "--quiet"]) == 0
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] > 0.5
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3


def test_an_interrupt_before_anything_is_written_names_no_resume(tmp_path):
    """Killed while its data loads: no run directory yet, so nothing to --resume."""
    script = """
import sys, threading
from cnnkit.cli import main
import cnnkit.runs.run as run_module
load = run_module.load_splits
def pause(*a, **k):
    print("loading", flush=True)
    threading.Event().wait()
run_module.load_splits = pause
sys.exit(main(sys.argv[1:]))
"""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", script, "train", *SMALL, "--epochs", "1",
                             "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    paused = wait_for_line(proc, "loading")
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1].decode()
    assert paused and proc.returncode == 130
    assert err.splitlines()[-1] == "cnnkit: interrupted"
    assert not (run / "config.json").exists()


def test_resume_on_a_finished_run_says_nothing_is_left_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    kept = {name: ((run / name).read_bytes(), (run / name).stat().st_mtime_ns)
            for name in ("metrics.json", "report.md", "report.html", "config.json")}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is finished: all 2 of its epochs are trained; there is nothing left to train" in err
    assert f"cnnkit train --resume {run} --epochs 3" in err
    assert {name: ((run / name).read_bytes(), (run / name).stat().st_mtime_ns)
            for name in kept} == kept  # not scored again, no report rewritten
    with pytest.raises(CnnkitError, match="nothing left to train"):
        cnnkit.resume(run)
    # the command it shows trains the third epoch
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3


def test_resume_on_an_early_stopped_run_says_why_it_stopped(tmp_path):
    run = tmp_path / "run"
    cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=30, seed=3,
                              val_split=0.2, early_stopping=1, verbose=0,
                              out=str(run)))
    done = len((run / "history.csv").read_text().splitlines()) - 1
    assert done < 30, "early stopping never stopped the run"
    before = (run / "metrics.json").read_bytes()
    with pytest.raises(CnnkitError, match=rf"stopped after epoch {done} \(.*\); there is nothing "
                       "left to train"):
        cnnkit.resume(run, epochs=40)
    assert (run / "metrics.json").read_bytes() == before
    assert os.path.isfile(run / "report.md")
