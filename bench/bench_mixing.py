"""Test accuracy with and without label mixing on the `best` recipe: the recipe as it is, and
with --mixup, --cutmix or --random-erasing added, over the same seeds, scored on the official
10,000 Fashion-MNIST test images. Each run is bench_recipes.py's: a fresh process calling
`cnnkit.run(RunSpec.from_recipe(...))`, metrics from its RunResult.

    .venv/bin/python bench/bench_mixing.py --seeds 1 2 3                      # the whole recipe
    .venv/bin/python bench/bench_mixing.py --seeds 1 2 3 --limit 6000 --epochs 4   # a shorter one

Runs are interleaved by seed (seed 1 of every variant, then seed 2, ...), so a machine whose
load drifts over minutes weighs on every variant alike. Prints each run, then per variant the
mean and min accuracy and the mean of its per-seed differences from the plain recipe (the
same seed: the same initial weights and batch order), reported whatever its sign.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipes import run_recipe  # noqa: E402
from common import machine_line, warn_if_loaded  # noqa: E402

VARIANTS = {"plain": {}, "mixup 0.2": {"mixup": 0.2}, "cutmix 1.0": {"cutmix": 1.0},
            "random erasing 0.25": {"random_erasing": 0.25}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="best")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--limit", type=int, help="train on the first N training images (default: all)")
    ap.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = ap.parse_args(argv)
    base = {k: v for k, v in (("limit", args.limit), ("epochs", args.epochs)) if v is not None}
    print(f"recipe {args.recipe} {base or '(as it is)'}; seeds {args.seeds}")
    print(machine_line())
    warn_if_loaded()
    acc = {name: {} for name in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name in args.variants:
                out = Path(tmp) / f"{name.replace(' ', '-')}-{seed}"
                wall, _, m = run_recipe(args.recipe, seed, out, {**base, **VARIANTS[name]})
                acc[name][seed] = m["test_accuracy"]
                print(f"  {name:20} seed {seed}: test accuracy {m['test_accuracy']:.4f} "
                      f"({m['epochs_run']} epochs, {wall:.0f} s wall)", flush=True)
    print(f"{'variant':20} {'mean':>7} {'min':>7} {'vs plain (mean of per-seed differences)':>40}")
    for name, by_seed in acc.items():
        values = list(by_seed.values())
        line = f"{name:20} {sum(values) / len(values):>7.2%} {min(values):>7.2%}"
        if "plain" in acc and name != "plain":
            diffs = [by_seed[s] - acc["plain"][s] for s in by_seed]
            line += f" {sum(diffs) / len(diffs) * 100:>+30.2f} points " \
                    f"({', '.join(f'{d * 100:+.2f}' for d in diffs)})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
