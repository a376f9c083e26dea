"""--image-size on arrays held in memory: resize once (into the mapped cache) or every batch?

    .venv/bin/python bench/bench_imgsize.py [--size 160] [--images 2048] [--rounds 3]

Fashion-MNIST's 28x28x1 training images brought to SIZExSIZEx3, as `cnnkit train --dataset
fashion-mnist --image-size 160 --channels 3` asks. Two ways, each timed as training images/s
of fast-cnn-dense (Adam, batch 64, channels_last, fp32) on the same batches:
  - once: the images converted once by cnnkit.data.mapped.map_converted (what a run does),
    each batch gathered from the memory-mapped cache file;
  - per batch: each batch gathered from the 28x28 images and converted by convert_images.
Rounds interleave the two (A B A B ...); medians are printed, and the one-off conversion's
time and the cache's size for all 70,000 images.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from cnnkit.data import convert_images, load_dataset
from cnnkit.data.base import Dataset
from cnnkit.data.batches import to_model_input
from cnnkit.data.mapped import map_converted
from cnnkit.model.presets import create_model

BATCH, STEPS = 64, 10


def images_per_s(get_batch, y, size: int, seed: int) -> float:
    torch.manual_seed(seed)
    net = create_model("fast-cnn-dense", input_shape=(size, size, 3), num_classes=10).net
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(STEPS + 2):  # two warm-up steps
        if step == 2:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(y), (BATCH,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(get_batch(idx)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return STEPS * BATCH / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = args.size
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    full = load_dataset("fashion-mnist")
    x28, y = full.x_train[:args.images].clone(), full.y_train[:args.images].clone()
    t0 = time.perf_counter()
    once = map_converted(Dataset("bench", full.class_names, x28, y), 3, (size, size)).x_train
    t_once = time.perf_counter() - t0
    per_image = once[0].numel()
    print(f"resize once: {args.images:,} images to {size}x{size}x3 in {t_once:.2f} s "
          f"({args.images / t_once:,.0f} images/s, cache written); all 70,000 would be "
          f"{70_000 * per_image / 2**30:.1f} GiB, {70_000 / args.images * t_once:.0f} s once")
    ways = {"once (mapped)": lambda idx: to_model_input(once.index_select(0, idx)),
            "per batch": lambda idx: to_model_input(
                convert_images(x28.index_select(0, idx), 3, (size, size)))}
    rates = {k: [] for k in ways}
    for r in range(args.rounds):
        for name, get in ways.items():
            rates[name].append(images_per_s(get, y, size, seed=r))
    base = statistics.median(rates["once (mapped)"])
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:>14}: {med:7.1f} training images/s (median of {args.rounds}; "
              f"{med / base:.3f}x once) {['%.1f' % v for v in values]}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
