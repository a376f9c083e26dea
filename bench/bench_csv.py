"""Reading Kaggle's Digit Recognizer train.csv: cnnkit's csv: reader against pandas.read_csv.

    .venv/bin/python bench/bench_csv.py [--rows 42000] [--rounds 3]

Makes a file of Kaggle's shape (a `label,pixel0..pixel783` header, then 42,000 rows) from the
first Fashion-MNIST training images (real pixels: mostly zeros, as MNIST's), then times, in
interleaved rounds (A B C A B C ...):
  - cnnkit: `load_dataset("csv:train.csv")` on an empty cache: parsing, checking, and writing
    the memory-mapped cache file a run then reads (what the first `cnnkit train` pays);
  - cnnkit, parser only: cnnkit.data.csv.pixel_table (the rows as uint8 images, no cache);
  - pandas: `pd.read_csv(path)` then `.to_numpy(np.uint8)` and the reshape to (N, 28, 28, 1).
It prints each median, the ratios (pandas / cnnkit: above 1 means cnnkit is faster), the load
of the same dataset again from its cache, and the machine with its load average. Both readers
run in this process with their imports done first (torch, pandas): the times are the reading.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FASHION, machine_line, warn_if_loaded  # noqa: E402


def make_csv(path: Path, rows: int) -> None:
    from cnnkit.data.idx import read_images_labels

    x, y = read_images_labels(FASHION / "train-images-idx3-ubyte.gz",
                              FASHION / "train-labels-idx1-ubyte.gz")
    table = np.column_stack([y[:rows], np.asarray(x[:rows]).reshape(rows, -1)])
    with open(path, "w") as f:
        f.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
        np.savetxt(f, table, fmt="%d", delimiter=",")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=42000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import pandas as pd
    import torch  # noqa: F401  (imported before timing: the reading is what is timed)

    from cnnkit.data import load_dataset
    from cnnkit.data.csv import pixel_table

    work = Path(tempfile.mkdtemp(prefix="bench-csv-"))
    try:
        run(work, args, pd, load_dataset, pixel_table)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # 100 MB of CSV and a cache per round


def run(work: Path, args, pd, load_dataset, pixel_table) -> None:
    path = work / "train.csv"
    t0 = time.perf_counter()
    make_csv(path, args.rows)
    print(f"{path}: {args.rows:,} rows x 785 columns, {path.stat().st_size / 1e6:.0f} MB "
          f"(written in {time.perf_counter() - t0:.1f} s)")
    warn_if_loaded()

    def cnnkit_cold():
        os.environ["CNNKIT_DATA"] = tempfile.mkdtemp(dir=work)  # an empty cache each round
        return load_dataset(f"csv:{path}").x_train

    def cnnkit_parser():
        return pixel_table(path, "train.csv", None, need_labels=True)[0]

    def pandas_read():
        return pd.read_csv(path).to_numpy(np.uint8)[:, 1:].reshape(-1, 28, 28, 1)

    ways = {"cnnkit csv: (empty cache)": cnnkit_cold, "cnnkit parser only": cnnkit_parser,
            "pandas.read_csv + uint8": pandas_read}
    times = {k: [] for k in ways}
    for r in range(args.rounds):
        for name, fn in ways.items():
            t = time.perf_counter()
            x = fn()
            times[name].append(time.perf_counter() - t)
            assert tuple(x.shape) == (args.rows, 28, 28, 1)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
              flush=True)
    t = time.perf_counter()
    load_dataset(f"csv:{path}")  # the last round's cache: mapped, nothing parsed
    warm = time.perf_counter() - t
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["pandas.read_csv + uint8"]
    print()
    for k, v in med.items():
        print(f"{k:28s} median {v:6.2f} s   pandas / this: {base / v:4.2f}x")
    print(f"{'cnnkit csv: (cached)':28s}        {warm:6.2f} s   pandas / this: {base / warm:4.1f}x")
    print(machine_line())


if __name__ == "__main__":
    main()
