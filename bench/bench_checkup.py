"""What a run's own checks cost at its start and end (issue 30): the "ran_on" record written
into config.json (versions, CPU, git, the data's CRC-32) and the doctor's data checks (images
per class, near-duplicates across train and test), against the decode of the same dataset, on
Fashion-MNIST's 70,000 images.

    python bench/bench_checkup.py [--rounds 3]

Prints the median wall and CPU seconds of each (on a busy machine the wall time is mostly
waiting for a core: the CPU time is the work) and the machine line with its load."""
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

    def timed(name, f):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        times[name].append((time.perf_counter() - t, time.process_time() - c))
        return out

    for _ in range(args.rounds):
        ds = timed("load (decoded, cached)", lambda: load_dataset("fashion-mnist"))
        timed("ran_on", lambda: ran_on(ds))
        splits = {"train": (ds.x_train, ds.y_train), "val": None, "test": (ds.x_test, ds.y_test)}
        checks = timed("data_checks", lambda: data_checks(splits, ds.num_classes))
    for name, values in times.items():
        print(f"{name:>24}: {median(v[0] for v in values):.3f} s wall, "
              f"{median(v[1] for v in values):.3f} s CPU (medians of {len(values)})")
    print(f"near-duplicates found: {checks['duplicates']} of {checks['test_images']} test images")
    print(machine_line())


if __name__ == "__main__":
    main()
