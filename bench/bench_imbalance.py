"""What --class-weight balanced and --sampler balanced do for a rare class: scikit-learn's digits
with one class cut to a tenth of its training images (the test split whole), trained with the
same recipe and seed three ways; the rare class's test recall, balanced accuracy, accuracy.

    .venv/bin/python bench/bench_imbalance.py [--seeds 0 1 2 3 4] [--rare 3] [--epochs N]

The baseline is the same run without either option (the same seed: the same initial weights).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, warn_if_loaded  # noqa: E402

WAYS = {"baseline": {}, "--class-weight balanced": {"class_weight": "balanced"},
        "--sampler balanced": {"sampler": "balanced"}}


def write_cut_digits(path: Path, rare: int, keep: float = 0.1) -> tuple[int, int]:
    """digits as an npz: cnnkit's own stratified 80/20 split (seed 0), class `rare` cut to
    `keep` of its training images. Returns (its training images, its test images)."""
    import numpy as np

    from cnnkit.data import load_dataset
    from cnnkit.data.split import stratified_split

    ds = load_dataset("digits")
    x, y = ds.x_train, ds.y_train
    train, test = stratified_split(y, (0.8, 0.2), seed=0)
    ids = train[y[train] == rare]
    dropped = set(ids[max(1, round(len(ids) * keep)):].tolist())
    train = [int(i) for i in train if int(i) not in dropped]
    np.savez(path, x_train=x[train].numpy(), y_train=y[train].numpy(),
             x_test=x[test].numpy(), y_test=y[test].numpy())
    return len(ids) - len(dropped), int((y[test] == rare).sum())


def run_once(npz: Path, seed: int, epochs: int | None, rare: int, options: dict,
             precision: str | None = None) -> dict:
    from cnnkit import RunSpec, run

    t0 = time.perf_counter()
    result = run(RunSpec(recipe="fast", dataset=f"npz:{npz}", seed=seed, epochs=epochs,
                         threads=1, verbose=0, precision=precision, **options))
    m = result.metrics
    return {"recall": m["per_class_recall"][str(rare)], "balanced": m["balanced_accuracy"],
            "accuracy": m["test_accuracy"], "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--rare", type=int, default=3, help="the digit cut to a tenth (default: 3)")
    p.add_argument("--epochs", type=int, help="default: the recipe's (3)")
    p.add_argument("--precision", help="auto, bf16 or fp32 (default: the recipe's, auto)")
    args = p.parse_args()
    print(machine_line())
    warn_if_loaded()
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "digits-cut.npz"
        n_rare, n_test = write_cut_digits(npz, args.rare)
        print(f"digits, recipe fast, {args.epochs or 'its'} epochs, precision "
              f"{args.precision or 'auto'}, 1 thread: class {args.rare} has "
              f"{n_rare} training images (a tenth), {n_test} test images")
        run_once(npz, args.seeds[0], args.epochs, args.rare, {}, args.precision)  # warm-up
        figures = {way: [] for way in WAYS}
        for seed in args.seeds:
            for way, options in WAYS.items():
                f = run_once(npz, seed, args.epochs, args.rare, options, args.precision)
                figures[way].append(f)
                print(f"seed {seed} {way:<24} recall({args.rare}) {f['recall']:.3f}  balanced "
                      f"accuracy {f['balanced']:.4f}  accuracy {f['accuracy']:.4f}  "
                      f"{f['seconds']:.1f} s")
    base = statistics.mean(f["recall"] for f in figures["baseline"])
    for way, rows in figures.items():
        recall = statistics.mean(f["recall"] for f in rows)
        gains = [100 * (f["recall"] - b["recall"]) for f, b in zip(rows, figures["baseline"])]
        print(f"mean {way:<24} recall({args.rare}) {recall:.3f} ({100 * (recall - base):+.1f} "
              f"points; per seed {', '.join(f'{g:+.1f}' for g in gains)}), balanced accuracy "
              f"{statistics.mean(f['balanced'] for f in rows):.4f}, accuracy "
              f"{statistics.mean(f['accuracy'] for f in rows):.4f}, time x"
              f"{statistics.mean(f['seconds'] for f in rows) / statistics.mean(f['seconds'] for f in figures['baseline']):.2f}")
    print(machine_line())


if __name__ == "__main__":
    main()
