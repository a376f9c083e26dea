"""What a run's own checks cost at its start and end (issue 30): the "ran_on" record written
into config.json (versions, CPU, git, the data's CRC-32) and the doctor's data checks (images
per class, near-duplicates across train and test), against the decode of the same dataset, on
Fashion-MNIST's 70,000 images.

    python bench/bench_checkup.py [--rounds 3]

Prints the median seconds of each, the checks' share of the load, and the machine line."""
from __future__ import annotations

import argparse
import time

from common import machine_line, median


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from cnnkit.data import load_dataset
    from cnnkit.runs.doctor import data_checks
    from cnnkit.runs.provenance import ran_on

    print(machine_line())
    times = {"load (decoded, cached)": [], "ran_on": [], "data_checks": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        ds = load_dataset("fashion-mnist")
        times["load (decoded, cached)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ran_on(ds)
        times["ran_on"].append(time.perf_counter() - t)
        splits = {"train": (ds.x_train, ds.y_train), "val": None, "test": (ds.x_test, ds.y_test)}
        t = time.perf_counter()
        checks = data_checks(splits, ds.num_classes)
        times["data_checks"].append(time.perf_counter() - t)
    for name, values in times.items():
        print(f"{name:>24}: {median(values):.3f} s (median of {len(values)})")
    print(f"near-duplicates found: {checks['duplicates']} of {checks['test_images']} test images")
    print(machine_line())


if __name__ == "__main__":
    main()
