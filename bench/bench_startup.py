"""Start-up: wall time of `cnnkit --help` and `cnnkit presets` as fresh processes (median of 7),
beside a bare `python -c pass` and `python -c "import torch"` for scale.

    .venv/bin/python bench/bench_startup.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wall(cmd, n=7):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    cnnkit = str(BIN / "cnnkit")
    rows = [("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
            ("cnnkit --help", [cnnkit, "--help"]),
            ("cnnkit presets", [cnnkit, "presets"]),
            ("cnnkit summary seed002-fashion", [cnnkit, "summary", "seed002-fashion"])]
    for label, cmd in rows:
        print(f"{label:34} {wall(cmd) * 1000:7.0f} ms")
    print("goal: cnnkit --help and cnnkit presets ≤ 500 ms")


if __name__ == "__main__":
    main()
