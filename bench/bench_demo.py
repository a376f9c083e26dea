"""How long `cnnkit demo` (`make demo`) takes, as a newcomer's machine runs it: the whole process,
wall clock, on a quiet machine and on a busy one (one core kept busy by another program, as a
browser or a build does), so README's figure is one a user will see.

    .venv/bin/python bench/bench_demo.py [--runs 1] [--busy 1]

Prints each run's time to the result (the run's own `... s to this result`) and the whole
process, the load average before each run, and the busy / quiet ratio.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def spin(stop) -> None:
    """Keep one core busy until told to stop (pure Python: no threads of its own)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def one_demo(where: Path) -> tuple[float, float]:
    """(seconds to the result as the run reports it, seconds of the whole process)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cnnkit", "demo", "--out", str(where)],
                         env=env, capture_output=True, text=True, check=True).stdout
    whole = time.perf_counter() - t0
    found = re.search(r"; ([0-9.]+) s to this result", out)
    return (float(found[1]) if found else float("nan")), whole


def measure(label: str, runs: int, busy: int) -> list[tuple[float, float]]:
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(busy)]
    for h in hogs:
        h.start()
    times = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(runs):
                load = os.getloadavg()[0]
                result, whole = one_demo(Path(tmp) / f"demo-{i}")
                times.append((result, whole))
                print(f"{label}: {result:.1f} s to the result, {whole:.1f} s whole process "
                      f"(load average {load:.2f} before)", flush=True)
    finally:
        stop.set()
        for h in hogs:
            h.join()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="demos per condition (default: 1)")
    ap.add_argument("--busy", type=int, default=1,
                    help="cores kept busy by another program in the busy runs (default: 1)")
    args = ap.parse_args()
    print(machine_line())
    quiet = measure("quiet", args.runs, 0)
    busy = measure(f"busy ({args.busy} core{'s' * (args.busy > 1)} taken)", args.runs, args.busy)
    q, b = median([w for _, w in quiet]), median([w for _, w in busy])
    print(f"median whole process: quiet {q:.1f} s, busy {b:.1f} s: busy / quiet {b / q:.2f}x")


if __name__ == "__main__":
    main()
