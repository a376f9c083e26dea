"""The Keras path against the core: the same model trained through `cnnkit.keras`'s
`model.fit` and through cnnkit's `Trainer`, in one run, same data, batch size and epochs.

Issue 26: cnnkit.keras's fit is an adapter over the core Trainer, so both should train at the
same speed. The Keras path trains in float32, as Keras does (its weights match real Keras's),
so the like-for-like line is the core at `precision="fp32"`; the Keras path under
`mixed_precision.set_global_policy("mixed_bfloat16")` is timed against the core's default
(bf16 autocast where the CPU has bf16 math). `--baseline-tree DIR` also times
the Keras path of another checkout (for instance the tree before the change) in a subprocess.

    .venv/bin/python bench/bench_keras_path.py [--model seed002-fashion] [--images 12000]
        [--epochs 1] [--repeats 3] [--baseline-tree /path/to/older/checkout]

Prints images/s of each (median of the repeats, interleaved), the ratios, and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, warn_if_loaded  # noqa: E402

BATCH = 100


def data(n: int):
    from cnnkit.data import load_dataset

    ds = load_dataset("fashion-mnist")
    return ds.x_train[:n], ds.y_train[:n]


def keras_path(model_name: str, x, y, epochs: int, policy: str = "float32") -> float:
    """images/s of `cnnkit.keras` fit: floats in [0, 1], as a Keras user feeds them, under
    the mixed precision `policy`."""
    from cnnkit.keras import models, optimizers
    from cnnkit.model.presets import create_model

    try:  # a checkout from before mixed_precision times float32 only
        from cnnkit.keras import mixed_precision

        mixed_precision.set_global_policy(policy)
    except ImportError:
        if policy != "float32":
            raise

    torch.manual_seed(777)
    model = models.Sequential.from_config(create_model(model_name).get_config())
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xf = x.numpy().astype("float32") / 255
    t0 = time.perf_counter()
    model.fit(xf, y.numpy(), batch_size=BATCH, epochs=epochs, verbose=0)
    return len(x) * epochs / (time.perf_counter() - t0)


def core(model_name: str, x, y, epochs: int, precision: str) -> float:
    """images/s of the core Trainer on the same images (uint8, scaled by the loop)."""
    from cnnkit.model.presets import create_model
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    torch.manual_seed(777)
    trainer = Trainer(create_model(model_name), TrainConfig(
        epochs=epochs, batch_size=BATCH, optimizer="adam", lr=1e-3, seed=777, verbose=0,
        precision=precision))
    t0 = time.perf_counter()
    trainer.fit(x, y)
    return len(x) * epochs / (time.perf_counter() - t0)


def other_tree(tree: str, args) -> float:
    """The Keras path of another checkout, timed by this script in a subprocess."""
    cmd = [sys.executable, __file__, "--model", args.model, "--images", str(args.images),
           "--epochs", str(args.epochs), "--only-keras"]
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])["keras_path"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="seed002-fashion")
    ap.add_argument("--images", type=int, default=12000, help="Fashion-MNIST training images")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    ap.add_argument("--baseline-tree", help="another checkout whose Keras path to time too")
    ap.add_argument("--only-keras", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    x, y = data(args.images)
    if args.only_keras:
        print(json.dumps({"keras_path": keras_path(args.model, x, y, args.epochs)}))
        return
    print(machine_line())
    warn_if_loaded()
    runs = {"keras": [], "keras_bf16": [], "fp32": [], "auto": [], "baseline": []}
    for _ in range(args.repeats):  # interleaved: the machine's speed drifts within minutes
        runs["keras"].append(keras_path(args.model, x, y, args.epochs))
        runs["fp32"].append(core(args.model, x, y, args.epochs, "fp32"))
        runs["keras_bf16"].append(keras_path(args.model, x, y, args.epochs, "mixed_bfloat16"))
        runs["auto"].append(core(args.model, x, y, args.epochs, "auto"))
        if args.baseline_tree:
            runs["baseline"].append(other_tree(args.baseline_tree, args))
    med = {k: median(v) for k, v in runs.items() if v}
    print(f"{args.model}, {args.images} images x {args.epochs} epoch(s), batch {BATCH}, "
          f"median of {args.repeats}")
    rows = [("cnnkit.keras fit (fp32)", "keras"), ("core Trainer, fp32", "fp32"),
            ("cnnkit.keras fit, mixed_bfloat16", "keras_bf16"),
            ("core Trainer, precision auto", "auto")]
    if args.baseline_tree:
        rows.append((f"cnnkit.keras fit of {args.baseline_tree}", "baseline"))
    for label, key in rows:
        each = ", ".join(f"{v:,.0f}" for v in runs[key])
        print(f"  {label:38} {med[key]:8,.0f} images/s   (each: {each})")
    print(f"  ratio Keras path / core fp32:          {med['keras'] / med['fp32']:.2f}x (goal 1.0x)")
    print(f"  ratio Keras bf16 / core auto:          {med['keras_bf16'] / med['auto']:.2f}x"
          " (goal 1.0x where auto means bf16)")
    if args.baseline_tree:
        print(f"  ratio Keras path / baseline tree's:    {med['keras'] / med['baseline']:.2f}x")
    print(machine_line())  # the load again, after the runs


if __name__ == "__main__":
    main()
