"""Shared pieces of the data-parallel tests: small runs on digits, rank processes found by
their environment, and the CLI as a subprocess (the ranks are real processes either way)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Small and fast: seed003-cnn on sklearn's digits, fp32 (bf16 autocast rounds a 32-image part
# differently from a 64-image batch: see test_ddp_equivalence), one thread per rank so the
# arithmetic is the same whatever else this machine runs.
BASE = dict(model="seed003-cnn", dataset="digits", batch_size=64, seed=1, verbose=0, threads=1,
            precision="fp32", val_split=0.2)
CLI_BASE = ["--model", "seed003-cnn", "--dataset", "digits", "--batch-size", "64", "--seed", "1",
            "--threads", "1", "--precision", "fp32", "--val-split", "0.2"]


def no_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "time"}


def python(args, timeout=240) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter, from the repository root."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def cli(args, timeout=240) -> subprocess.CompletedProcess:
    """`python -m cnnkit ARGS` (what the `cnnkit` command runs)."""
    return python(["-m", "cnnkit", *args], timeout)


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc's parent links)."""
    parents = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        cur = todo.pop()
        kids = [c for c, parent in parents.items() if parent == cur]
        found += kids
        todo += kids
    return found


def rank_pid(launcher_pid: int, rank: int) -> int | None:
    """The pid of the process that is `rank` of the run `launcher_pid` started (its RANK)."""
    for pid in children(launcher_pid):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and any(e.startswith(b"TORCHELASTIC_RUN_ID=")
                                                   for e in env):
            return pid
    return None


def saved_epoch(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "state" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(condition, timeout: float, what: str, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
