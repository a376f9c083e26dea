"""Architecture search by hand for the `fast` and `best` recipes: train named model variants on
the full Fashion-MNIST in one process (the data loaded once), score each on the official 10,000
test images, and print test accuracy, training time and the time per step.

    .venv/bin/python bench/bench_variants.py fast-cnn-dense --epochs 3 --seeds 1 2 3 --set lr=8e-3
    .venv/bin/python bench/bench_variants.py --steps fast-cnn fast-cnn-dense stride-stem   # step cost only
    .venv/bin/python bench/bench_variants.py --list

Everything but the model is the `fast` recipe's (Adam one-cycle, batch 128, label smoothing
0.1) unless `--recipe best` or `--set` says otherwise. `--steps` times interleaved training steps
(batch 128, random data, medians of 7 rounds) and prints each variant's ratio to the first, so
a variant's cost is known before its accuracy. The first fit in a process runs slower than the
next (allocator warm-up): repeat the first seed (`--seeds 1 1 2 3`) when timing matters.
The figures in bench/README.md ("fast and best, third session") come from this script.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, training_step  # noqa: E402

from cnnkit.layers import (Activation, BatchNormalization, Conv2D, Dense, Dropout,  # noqa: E402
                           Flatten, MaxPooling2D)


def conv_pool_bn(filters, kernel=3, padding="same"):
    """fast-cnn's stage: conv → 2x2 max-pool → batch norm → ReLU."""
    return [Conv2D(filters, kernel, padding=padding, use_bias=False), MaxPooling2D(2),
            BatchNormalization(momentum=0.9), Activation("relu")]


def conv_bn(filters, kernel=3, strides=1):
    return [Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False),
            BatchNormalization(momentum=0.9), Activation("relu")]


def head(hidden=0, dropout=0.0):
    layers = [Flatten()]
    if hidden:
        layers += [Dense(hidden, use_bias=False), BatchNormalization(momentum=0.9),
                   Activation("relu")]
    if dropout:
        layers.append(Dropout(dropout))
    return layers + [Dense(10, activation="softmax")]


def stages(*widths):
    return [layer for w in widths for layer in conv_pool_bn(w)]


# name: (what it tries, layers)
VARIANTS = {
    "fast-cnn": ("the preset: 16-32-64 conv→pool→BN→ReLU, Flatten, softmax",
                 lambda: stages(16, 32, 64) + head()),
    "fast-cnn-dense": ("the preset: fast-cnn + Dense(128)→BN→ReLU before the softmax",
                       lambda: stages(16, 32, 64) + head(128)),
    "hidden-64": ("fast-cnn + a 64-unit hidden layer", lambda: stages(16, 32, 64) + head(64)),
    "hidden-256": ("fast-cnn + a 256-unit hidden layer", lambda: stages(16, 32, 64) + head(256)),
    "wide-96": ("16-32-96, no hidden layer", lambda: stages(16, 32, 96) + head()),
    "wide-128": ("16-32-128, no hidden layer", lambda: stages(16, 32, 128) + head()),
    "wide-128-dense": ("16-32-128 + Dense(128)→BN→ReLU", lambda: stages(16, 32, 128) + head(128)),
    "narrow-8": ("8-32-64: fewer stage-1 filters (off oneDNN's 16-channel blocking: slower)",
                 lambda: stages(8, 32, 64) + head()),
    "stride-stem": ("a 4x4 stride-2 conv instead of stage 1's conv + pool, hidden 128",
                    lambda: conv_bn(16, 4, 2) + stages(32, 64) + head(128)),
    "patch-stem": ("a 2x2 stride-2 (patch) conv instead of stage 1's conv + pool, hidden 128",
                   lambda: conv_bn(16, 2, 2) + stages(32, 64) + head(128)),
    "patch-stem-32": ("patch-stem with 32 filters", lambda: conv_bn(32, 2, 2) + stages(32, 64)
                      + head(128)),
    "valid-1": ("fast-cnn-dense with stage 1's conv unpadded (26x26)",
                lambda: conv_pool_bn(16, padding="valid") + stages(32, 64) + head(128)),
    "valid-12": ("fast-cnn-dense with stages 1 and 2 unpadded",
                 lambda: conv_pool_bn(16, padding="valid") + conv_pool_bn(32, padding="valid")
                 + stages(64) + head(128)),
    "no-bn-1": ("fast-cnn-dense without batch norm in stage 1 (conv with bias → pool → ReLU)",
                lambda: [Conv2D(16, 3, padding="same", activation="relu"), MaxPooling2D(2)]
                + stages(32, 64) + head(128)),
    "best-cnn": ("the old best preset: 24-48-96, dropout 0.25", lambda: stages(24, 48, 96)
                 + head(0, 0.25)),
    "best-cnn-dense": ("24-48-96 + Dense(256)→BN→ReLU, dropout 0.25",
                       lambda: stages(24, 48, 96) + head(256, 0.25)),
    "best-vgg": ("the preset: 32 | 64-64 | 128-128 (two convs a stage), Dense(256), dropout 0.25",
                 lambda: conv_pool_bn(32) + conv_bn(64) + conv_pool_bn(64) + conv_bn(128)
                 + conv_pool_bn(128) + head(256, 0.25)),
}

RECIPE_OPTIONS = {
    "fast": dict(optimizer="adam", lr=8e-3, batch_size=128, schedule="onecycle",
                 label_smoothing=0.1),
    "best": dict(optimizer="adam", lr=3e-3, batch_size=128, schedule="onecycle",
                 label_smoothing=0.1, test_time_flip=True,
                 augment={"horizontal_flip": True, "width_shift_range": 2,
                          "height_shift_range": 2, "fill_mode": "constant"}),
}


def build(name):
    from cnnkit.model.sequential import Sequential

    return Sequential(VARIANTS[name][1](), input_shape=(28, 28, 1), name=name)


def time_steps(names, batch=128, rounds=7, steps=30):
    fns = {n: training_step(build(n), batch) for n in names}
    for fn in fns.values():
        for _ in range(10):
            fn()
    times = {n: [] for n in names}
    for _ in range(rounds):  # interleaved: a drifting host weighs on every variant alike
        for n, fn in fns.items():
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            times[n].append((time.perf_counter() - t) / steps * 1e3)
    base = median(times[names[0]])
    for n in names:
        print(f"{n:16s} {median(times[n]):6.2f} ms per step (batch {batch})  "
              f"{median(times[n]) / base:.2f}x {names[0]}")


def train(names, epochs, seeds, recipe, overrides):
    import torch

    from cnnkit.data import load_dataset
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    ds = load_dataset("fashion-mnist", progress=False)
    for name in names:
        for seed in seeds:
            torch.manual_seed(seed)
            options = {**RECIPE_OPTIONS[recipe], "epochs": epochs, "seed": seed, "verbose": 0,
                       **overrides}
            trainer = Trainer(build(name), TrainConfig(**options))
            t = time.perf_counter()
            trainer.fit(ds.x_train, ds.y_train)
            fit_s = time.perf_counter() - t
            acc = trainer.evaluate(ds.x_test, ds.y_test)["accuracy"]
            steps = epochs * -(-len(ds.x_train) // options["batch_size"])
            print(f"{name} {epochs} epochs seed {seed} {overrides or ''}: test accuracy "
                  f"{acc:.2%}, training {fit_s:.1f} s ({fit_s / steps * 1e3:.2f} ms per step)",
                  flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", help="names from --list")
    ap.add_argument("--list", action="store_true", help="the variants and what each tries")
    ap.add_argument("--steps", action="store_true", help="time training steps only")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--recipe", choices=sorted(RECIPE_OPTIONS), default="fast")
    ap.add_argument("--set", nargs="+", default=[], metavar="OPTION=VALUE",
                    help="training options over the recipe's (JSON values), e.g. lr=8e-3")
    args = ap.parse_args()
    if args.list or not args.variants:
        for name, (what, _) in VARIANTS.items():
            print(f"{name:16s} {what}")
        return
    unknown = [n for n in args.variants if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant {unknown[0]!r}; valid: {', '.join(VARIANTS)}")
    print(machine_line())
    if args.steps:
        time_steps(args.variants)
    else:
        overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        train(args.variants, args.epochs, args.seeds, args.recipe, overrides)


if __name__ == "__main__":
    main()
