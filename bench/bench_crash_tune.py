"""Crash safety of a search, measured: kill `cnnkit tune` with SIGKILL, run the same command
again, compare with the uninterrupted study.

    .venv/bin/python bench/bench_crash_tune.py [--trials 20] [--seed 0] [--jobs 1]

The study: a grid of 4 points (lr x the first conv's filters) over `seed003-cnn` on digits,
3 epochs a trial, no pruning, `--seed 7`, the default journal storage. The reference is run
once, uninterrupted. Each trial starts the same command into a fresh directory, SIGKILLs it
(the whole process group: with `--jobs 2` its workers too) at a moment drawn uniformly over
the reference's wall time, then runs the same command again to its end. Result, against the
reference, keyed by each trial's parameters:
  identical   every grid point finished once (no point repeated, none lost), each with the
              reference's objective value and test accuracy, and best.yaml the same (its
              comment lines aside)
  stuck       the second command fails or hangs (600 s)
  corrupt     it finishes, but a point is missing, repeated, or its numbers differ
Also counted: trials the interrupted study re-queued (RUNNING when killed; the tests in
tests/tune/test_resume.py check that such a trial continues from its run's state/). Children
run with OMP_NUM_THREADS=1.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, warn_if_loaded  # noqa: E402

SPACE = """\
base: {model: seed003-cnn, dataset: digits, epochs: 3, batch_size: 64, val_split: 0.2}
space:
  lr: [0.001, 0.003]
  layers.conv2d.filters: [8, 16]
objective: {metric: val_accuracy, direction: maximize}
"""
PARAMS = ("lr", "layers.conv2d.filters")


def command(space: Path, out: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "cnnkit", "tune", str(space), "--sampler", "grid",
            "--pruner", "none", "--seed", "7", "--jobs", str(jobs), "--out", str(out)]


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)  # its own group: the kill takes workers too


def outcome(out: Path) -> dict:
    """{params: (state, value, test_accuracy)} of the finished trials, their count per point,
    the retries, and best.yaml without its comments."""
    rows = list(csv.DictReader((out / "trials.csv").open()))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    seen = collections.Counter(tuple(r[p] for p in PARAMS) for r in done)
    results = {}
    for r in done:
        metrics = json.loads((out / r["dir"] / "metrics.json").read_text())
        results[tuple(r[p] for p in PARAMS)] = (r["value"], metrics["test_accuracy"])
    best = [line for line in (out / "best.yaml").read_text().splitlines()
            if not line.startswith("#")]
    return {"results": results, "counts": seen, "retries": sum(bool(r["retry_of"]) for r in rows),
            "best": best}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="kills (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    ap.add_argument("--jobs", type=int, default=1, help="the study's --jobs (default 1)")
    args = ap.parse_args()
    warn_if_loaded()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="cnnkit-crash-tune-"))
    space = work / "grid.yaml"
    space.write_text(SPACE)
    try:
        t0 = time.perf_counter()
        ref = subprocess.run(command(space, work / "reference", args.jobs), capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - t0
        if ref.returncode:
            print(f"the reference study failed: {ref.stderr.strip()[-500:]}")
            return 1
        reference = outcome(work / "reference")
        print(f"reference study: 4 grid points in {wall:.1f} s")
        tally, retried = collections.Counter(), 0
        for i in range(args.trials):
            out = work / f"t{i:03d}"
            argv = command(space, out, args.jobs)
            at = rng.uniform(0.0, wall)
            child = start(argv)
            try:
                child.wait(timeout=at)
                killed = False  # finished before the moment came
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                killed = True
            try:
                again = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                                       env={**os.environ, "OMP_NUM_THREADS": "1"})
                ok = again.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if not ok:
                result = "stuck"
            else:
                got = outcome(out)
                same = (got["results"] == reference["results"] and got["best"] == reference["best"]
                        and set(got["counts"].values()) == {1})
                result = "identical" if same else "corrupt"
                retried += got["retries"]
            tally[result] += 1
            print(f"{i:3d} kill at {at:5.2f} s ({at / wall:.2f} of the study)"
                  f"{'' if killed else ' (finished first)'} -> {result}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        print(f"\n{args.trials} kills of cnnkit tune --jobs {args.jobs}:")
        for k in ("identical", "stuck", "corrupt"):
            print(f"  {k:10s} {tally[k]:3d}  {100 * tally[k] / args.trials:5.1f}%")
        print(f"  trials running at the kill, re-queued and finished: {retried}")
        print(machine_line())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if tally["identical"] == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
