"""A learner's first photo folder: a pretrained, fine-tuned MobileNetV2 against the same network
trained from random initialisation, both with `cnnkit train`, on a small folder of pictures.

    .venv/bin/python bench/first_folder.py [--per-class 100] [--weights FILE] [--out DIR]

The folder: Fashion-MNIST's last five classes (sandal, shirt, sneaker, bag, ankle boot),
`--per-class` training pictures each as 32x32 RGB PNGs, and those classes' 5,000 test images
as the folder's test/ split: what someone who photographed a few hundred things gets.

The pretrained weights: `--weights FILE` (for instance Keras's ImageNet file,
mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5, where it can be downloaded).
Without it, a stand-in is made and named: MobileNetV2 trained by cnnkit on Fashion-MNIST's
*first* five classes (30,000 pictures no run here sees as its own), saved as a Keras
.weights.h5. Its features were learned on other classes, as ImageNet's are.

The two runs, same folder, same seed, same recipe (batch, optimizer, 10 epochs, validation):
    cnnkit train --recipe finetune --weights FILE --dataset folder:DIR
        (5 epochs of the head alone, then 5 with the top 3 blocks at lr / 10)
    cnnkit train --recipe finetune --weights none --head-epochs 0 --unfreeze all
        --finetune-lr-factor 1 --dataset folder:DIR      (random init, all of it trained)
It prints both test accuracies, their times and the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SOURCE_CLASSES, TARGET_CLASSES = range(0, 5), range(5, 10)
NAMES = ["tshirt", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
SIZE = 32


def rgb32(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 32, 32, 3) uint8: padded to MobileNetV2's smallest input."""
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(x[..., None], 3, axis=-1)


def make_folder(root: Path, per_class: int, seed: int) -> Path:
    from PIL import Image

    from cnnkit.keras.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist.load_data()
    rng = np.random.default_rng(seed)
    for split, xs, ys, n in (("train", x, y, per_class), ("test", xt, yt, None)):
        for c in TARGET_CLASSES:
            idx = np.flatnonzero(ys == c)
            idx = rng.choice(idx, n, replace=False) if n else idx
            d = root / split / NAMES[c]
            d.mkdir(parents=True, exist_ok=True)
            for i, img in zip(idx, rgb32(xs[idx])):
                Image.fromarray(img).save(d / f"{i:05d}.png")
    return root


def make_stand_in(out: Path, epochs: int, seed: int) -> Path:
    """MobileNetV2 trained by `cnnkit train --backbone mobilenetv2 --weights none` on the first
    five classes; its backbone's weights saved as a Keras .weights.h5 (what --weights takes).
    A cnnkit run, not a Keras-style fit: its batch-norm statistics are settled at the end
    (MobileNetV2's momentum 0.999 leaves them near their start after a few epochs)."""
    from cnnkit.keras.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist.load_data()
    keep, keep_t = np.isin(y, list(SOURCE_CLASSES)), np.isin(yt, list(SOURCE_CLASSES))
    source = out / "source.npz"
    np.savez(source, x_train=rgb32(x[keep]), y_train=y[keep], x_test=rgb32(xt[keep_t]),
             y_test=yt[keep_t])
    run = out / "stand-in-run"
    subprocess.run([sys.executable, "-m", "cnnkit", "train", "--backbone", "mobilenetv2",
                    "--weights", "none", "--dataset", f"npz:{source}", "--epochs", str(epochs),
                    "--batch-size", "128", "--seed", str(seed), "--out", str(run), "--quiet"],
                   check=True)
    accuracy = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    print(f"stand-in: {run}, test accuracy {accuracy:.4f} on its own five classes")
    import cnnkit
    from cnnkit.model.keras_writing import save_weights

    backbone = next(layer for layer in cnnkit.load(run).layers
                    if layer.name and layer.name.startswith("mobilenetv2"))
    path = out / "stand-in.weights.h5"
    save_weights(backbone.model, path)  # the model nested in the run's graph
    return path


def train(folder: Path, out: Path, weights: str, flags: list[str], seed: int):
    """(test accuracy, seconds) of one `cnnkit train --recipe finetune` run."""
    cmd = [sys.executable, "-m", "cnnkit", "train", "--recipe", "finetune", "--weights", weights,
           "--dataset", f"folder:{folder}", "--seed", str(seed), "--out", str(out), "--quiet",
           *flags]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics["test_accuracy"], seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--weights", help="a pretrained MobileNetV2 weights file (default: the stand-in)")
    p.add_argument("--stand-in-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/first-folder"))
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    folder = a.out / f"photos-{a.per_class}"
    if not folder.exists():
        make_folder(folder, a.per_class, a.seed)
    weights = a.weights
    if weights is None:
        weights = str(a.out / "stand-in.weights.h5")
        if not Path(weights).exists():
            start = time.perf_counter()
            make_stand_in(a.out, a.stand_in_epochs, a.seed)
            print(f"stand-in weights: {weights} ({time.perf_counter() - start:.0f} s)")
    scratch = ["--head-epochs", "0", "--unfreeze", "all", "--finetune-lr-factor", "1"]
    rows = [("pretrained + finetune", train(folder, a.out / "pretrained", weights, [], a.seed)),
            ("random init, all trained", train(folder, a.out / "scratch", "none", scratch,
                                               a.seed))]
    print(f"\n{a.per_class} pictures per class, 5 classes; weights: {weights}; "
          f"load {os.getloadavg()[0]:.1f}")
    for name, (acc, sec) in rows:
        print(f"  {name:26s} test accuracy {acc:.4f}   {sec:6.1f} s")


if __name__ == "__main__":
    main()
