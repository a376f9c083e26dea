"""Freed memory kept (cnnkit.train.memory) against glibc's malloc defaults, on the user's command.

    .venv/bin/python bench/bench_malloc.py                  # 4 rounds, --threads 2
    .venv/bin/python bench/bench_malloc.py --rounds 6 --threads auto

Runs `cnnkit train --recipe fast --seed 1` in fresh processes, alternately as shipped and with
CNNKIT_MALLOC=default (glibc's own thresholds), in ABBA order so a drifting host weighs on both
alike. Prints each run's wall and training time, its minor page faults (the kernel handing the
process fresh zeroed pages), accuracy and peak memory, then the medians and the ratio of
training times. With `--threads 2` (the default) both sides do the same arithmetic, so their
accuracies must agree to the last digit; `--threads auto` adds the thread governor's choices.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, warn_if_loaded  # noqa: E402

SIDES = ("kept", "glibc default")


def one_run(side: str, seed: int, threads: str, out: Path) -> dict:
    env = dict(os.environ)
    if side == "glibc default":
        env["CNNKIT_MALLOC"] = "default"
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnkit", "train", "--recipe", "fast", "--seed",
                    str(seed), "--threads", threads, "--out", str(out), "--quiet"], env=env,
                   check=True)
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, "train": m["train_time_s"], "accuracy": m["test_accuracy"],
            "faults": resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - faults,
            "rss": m["peak_rss_mb"], "threads": m.get("threads", {}).get("used")}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="runs of each side (default 4)")
    ap.add_argument("--threads", default="2", help="cnnkit's --threads (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(machine_line())
    warn_if_loaded()
    runs = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                res = one_run(side, args.seed, args.threads, Path(tmp) / f"{r}-{len(runs[side])}"
                              f"-{side.split()[0]}")
                runs[side].append(res)
                print(f"  {side:13s} wall {res['wall']:5.1f} s, training {res['train']:5.1f} s, "
                      f"{res['faults']:>9,} minor faults, accuracy {res['accuracy']:.4f}, peak "
                      f"{res['rss']:,.0f} MiB, threads used {res['threads']} "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
    for side in SIDES:
        v = runs[side]
        print(f"{side:13s} median wall {median([x['wall'] for x in v]):.1f} s, training "
              f"{median([x['train'] for x in v]):.1f} s (min {min(x['train'] for x in v):.1f}, "
              f"max {max(x['train'] for x in v):.1f}), faults "
              f"{median([x['faults'] for x in v]):,.0f}")
    ratio = median([x["train"] for x in runs["glibc default"]]) / median(
        [x["train"] for x in runs["kept"]])
    print(f"training time, glibc default / kept: {ratio:.2f}x")
    if args.threads != "auto":
        same = {x["accuracy"] for side in SIDES for x in runs[side]}
        print(f"accuracies {'identical' if len(same) == 1 else 'DIFFER'}: {sorted(same)}")


if __name__ == "__main__":
    main()
