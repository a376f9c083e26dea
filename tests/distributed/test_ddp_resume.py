"""A distributed run resumes exactly, and a killed rank fails it in seconds with one line,
after which it resumes from its last completed epoch."""
import csv
import os
import signal
import subprocess
import sys
import time

import cnnkit
from cnnkit import RunSpec

from _ddp_helpers import (BASE, CLI_BASE, ROOT, alive, children, cli, no_time, rank_pid,
                          saved_epoch, wait_for)


def test_resume_of_a_two_process_run_repeats_the_uninterrupted_one(tmp_path):
    full = cnnkit.run(RunSpec(**BASE, epochs=3, out=str(tmp_path / "full")), nproc=2)
    cnnkit.run(RunSpec(**BASE, epochs=1, out=str(tmp_path / "part")), nproc=2)
    more = cnnkit.resume(tmp_path / "part", epochs=3)  # 2 processes again: the run's own
    assert no_time(more.history) == no_time(full.history)
    assert more.metrics["test_loss"] == full.metrics["test_loss"]


def test_resumed_two_process_run_without_validation_keeps_its_last_model(tmp_path):
    """best/ of the first leg was kept and reported as the resumed run's (issue 26)."""
    from safetensors.torch import load_file

    base = dict(BASE, val_split=0)
    full = cnnkit.run(RunSpec(**base, epochs=4, out=str(tmp_path / "full")), nproc=2)
    cnnkit.run(RunSpec(**base, epochs=2, out=str(tmp_path / "part")), nproc=2)
    more = cnnkit.resume(tmp_path / "part", epochs=4)
    assert more.metrics["test_accuracy"] == full.metrics["test_accuracy"]
    assert more.metrics["test_loss"] == full.metrics["test_loss"]
    assert more.metrics["model_kept"] == "last epoch, no validation"
    a, b = (load_file(str(tmp_path / d / "best" / "weights.safetensors")) for d in ("part", "full"))
    assert all(a[k].equal(b[k]) for k in b)


def test_a_killed_rank_fails_the_run_in_seconds_and_it_resumes(tmp_path):
    out = tmp_path / "k"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "train", *CLI_BASE, "--batch-size", "16",
         "--epochs", "40", "--nproc", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for(lambda: saved_epoch(out) >= 1, 120, "the first saved epoch", proc)
        victim = rank_pid(proc.pid, 1)
        ranks = children(proc.pid)
        assert victim is not None
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)  # mid-epoch: epochs take ~0.5 s, saving is quicker
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = saved_epoch(out)
    assert proc.returncode == 2 and took < 10, (proc.returncode, took, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"cnnkit: error: rank 1 of 2 (pid {victim}) was killed by SIGKILL")
    assert f"{out} holds the run up to epoch {done}: continue it with cnnkit train --resume {out}" \
        in lines[0]
    assert not any(alive(pid) for pid in ranks)  # rank 0 was stopped too: nothing hangs on

    again = cli(["train", "--resume", str(out), "--epochs", str(done + 2)])
    assert again.returncode == 0, again.stderr
    assert f"Resuming {out} after epoch {done}" in again.stdout
    assert "Data-parallel: 2 processes (gloo)" in again.stdout  # the run's own 2 processes
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, done + 3))
