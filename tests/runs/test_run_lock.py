"""One run per directory: a second process training into, or resuming, a directory in use is
refused in one line; a killed holder leaves no lock behind."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _child import pause_after_epoch, wait_for_line  # noqa: E402

SMALL = ["--model", "seed003-cnn", "--dataset", "digits", "--batch-size", "64", "--seed", "3",
         "--epochs", "3", "--val-split", "0.2", "--quiet"]

PAUSE_AFTER_EPOCH_1 = pause_after_epoch(1)  # a real `cnnkit train`, paused holding its directory


@pytest.fixture
def busy_run(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", PAUSE_AFTER_EPOCH_1, "train", *SMALL,
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_line(proc, "saved epoch 1"), "the child run never saved its first epoch"
        yield out, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_second_run_into_a_busy_directory_is_refused(busy_run, capsys):
    out, proc = busy_run
    before = sorted(p.name for p in out.iterdir())
    assert main(["train", *SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"is in use by another cnnkit process (pid {proc.pid})" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    assert "in use by another cnnkit process" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing touched


def test_a_killed_holder_leaves_no_lock_behind(busy_run, capsys):
    out, proc = busy_run
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert (out / "metrics.json").is_file()


def test_early_stopping_needs_validation_data(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SMALL[:-3], "--quiet", "--early-stopping", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--early-stopping 2 needs validation data to watch; valid: with --val-split > 0" in err
    assert not run.exists()
