"""Augmentation throughput: cnnkit's batched Augmenter vs Keras's per-image way, vs a training step.

    .venv/bin/python bench/bench_augment.py [--repeats 7] [--only mixing]

Settings are seed 002's ImageDataGenerator: rotation 40, shifts 0.2, shear 0.2, zoom 0.2,
horizontal flip, fill nearest, on 28x28x1 images. Rows:
  - cnnkit Augmenter on float batches of 100 and 256 (one affine_grid + grid_sample per batch);
  - the per-image baseline: what Keras's ImageDataGenerator does for each image (numpy random
    draws, a 3x3 matrix, scipy.ndimage.affine_transform per channel, flip);
  - the whole cnnkit batch path (gather from uint8, scale to [0,1], augment) from BatchLoader;
  - one Adam training step of a small CNN (Conv32-pool-Conv64-pool-Dense100-Dense10, batch 100,
    random data, channels_last), to say what augmentation costs relative to a step.
Then label mixing (cnnkit.data.mixing) beside today's affine augmentation, per image, on the same
float batches of 128 (the fast and best recipes' batch): mixup (alpha 0.2), CutMix (alpha 1.0),
both (one per batch), random erasing (p 0.25) and the whole trio, each with its ratio to the
affine Augmenter's time (below 1: faster than today's augmentation). `--only mixing` prints this
table alone. Each figure is the median of --repeats timed runs after a warm-up. Torch uses its default
thread count.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from cnnkit.data.augment import Augmenter  # noqa: E402
from cnnkit.data.batches import BatchLoader  # noqa: E402
from cnnkit.data.mixing import Mixing  # noqa: E402

OURS, PER_IMAGE = "cnnkit Augmenter (batched)", "per-image scipy (Keras's way)"
SEED_002 = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
                zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def keras_style_one_image(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One (H, W, C) image, the way ImageDataGenerator.random_transform does it."""
    h, w, _ = img.shape
    theta = np.deg2rad(rng.uniform(-40, 40))
    tx, ty = rng.uniform(-0.2, 0.2) * h, rng.uniform(-0.2, 0.2) * w
    shear = np.deg2rad(rng.uniform(-0.2, 0.2))
    zx, zy = rng.uniform(0.8, 1.2, 2)
    flip = rng.random() < 0.5
    m = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    m = m @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    m = m @ np.diag([zx, zy, 1.0])
    centre = np.array([[1, 0, h / 2 - 0.5], [0, 1, w / 2 - 0.5], [0, 0, 1]])
    m = centre @ m @ np.linalg.inv(centre)
    channels = [ndi.affine_transform(img[..., c], m[:2, :2], m[:2, 2], order=1, mode="nearest")
                for c in range(img.shape[-1])]
    out = np.stack(channels, axis=-1)
    return out[:, ::-1] if flip else out


def small_cnn_step(batch: int = 100):
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 100), nn.ReLU(), nn.Linear(100, 10),
    ).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median), default 5")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--only", choices=["mixing"], help="mixing: the label-mixing table alone")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1):
        # Torch's worker threads spin at barriers; preempted by other processes, small parallel
        # ops slow down many-fold. Figures taken now overstate every torch row.
        print(f"warning: load average {load:.1f} exceeds {os.cpu_count()} cores; torch timings will be "
              f"inflated (try --threads 1, or rerun on an idle machine)")

    if args.only == "mixing":
        return mixing_table(args.repeats, load)
    aug = Augmenter(**SEED_002, seed=0)
    rows = []  # (name, batch, seconds per batch)
    for batch in (100, 256):
        x = torch.rand(batch, 1, 28, 28)
        rounds = 10  # batches per timed run, so each run is long enough to time
        t = median_seconds(lambda: [aug(x) for _ in range(rounds)], args.repeats) / rounds
        rows.append((OURS, batch, t))

        imgs = (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.float32)
        rng = np.random.default_rng(0)
        t = median_seconds(lambda: np.stack([keras_style_one_image(im, rng) for im in imgs]),
                           args.repeats, warmup=1)
        rows.append((PER_IMAGE, batch, t))

        data = torch.randint(0, 256, (batch * 10, 28, 28, 1), dtype=torch.uint8)
        loader = BatchLoader(data, torch.zeros(len(data), dtype=torch.int64), batch, augment=aug)
        t = median_seconds(lambda: [None for _ in loader], args.repeats) / len(loader)
        rows.append(("cnnkit batch path: gather+scale+augment", batch, t))

        plain = BatchLoader(data, torch.zeros(len(data), dtype=torch.int64), batch)
        t = median_seconds(lambda: [None for _ in plain], args.repeats) / len(plain)
        rows.append(("cnnkit batch path, no augmentation", batch, t))

    step = small_cnn_step(100)
    step_s = median_seconds(lambda: [step() for _ in range(5)], args.repeats) / 5

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.1f}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} runs; 28x28x1, seed-002 settings")
    print(f"{'what':42} {'batch':>5} {'ms/batch':>9} {'images/s':>10} {'vs step':>8}")
    for name, batch, seconds in rows:
        # Cost relative to the training step, scaled to batch 100 (the step's batch).
        rel = seconds * (100 / batch) / step_s
        print(f"{name:42} {batch:>5} {seconds * 1e3:>9.3f} {batch / seconds:>10,.0f} {rel:>7.1%}")
    print(f"{'small CNN train step (Adam)':42} {100:>5} {step_s * 1e3:>9.3f} {100 / step_s:>10,.0f} {1:>7.1%}")

    by = {(name, batch): s for name, batch, s in rows}
    for batch in (100, 256):
        speedup = by[(PER_IMAGE, batch)] / by[(OURS, batch)]
        print(f"batch {batch}: batched Augmenter is {speedup:.1f}x the per-image scipy loop")
    print(f"augmenting a batch of 100 costs {by[(OURS, 100)] / step_s:.1%} of one training step "
          f"(the per-image way: {by[(PER_IMAGE, 100)] / step_s:.0%})")
    print()
    return mixing_table(args.repeats, load)


def mixing_table(repeats: int, load: float, batch: int = 128) -> int:
    """Label mixing per image beside the affine Augmenter, on the same batches and generator."""
    import torch.nn.functional as F

    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    rows = lambda ids: F.one_hot(ids, 10).float()  # noqa: E731  (the loss's one-hot rows)
    contenders = [
        ("affine Augmenter (seed-002 settings)", Augmenter(**SEED_002)),
        ("affine Augmenter (best recipe: flip + 2 px)",
         Augmenter(horizontal_flip=True, width_shift_range=2, height_shift_range=2,
                   fill_mode="constant")),
        ("mixup 0.2", Mixing(mixup=0.2, targets=rows)),
        ("cutmix 1.0", Mixing(cutmix=1.0, targets=rows)),
        ("mixup 0.2 + cutmix 1.0 (one per batch)", Mixing(mixup=0.2, cutmix=1.0, targets=rows)),
        ("random erasing 0.25", Mixing(random_erasing=0.25)),
        ("mixup + cutmix + random erasing", Mixing(0.2, 1.0, 0.25, targets=rows)),
    ]
    g = torch.Generator().manual_seed(0)
    rounds = 20  # batches per timed run
    calls = {}
    for name, fn in contenders:
        if isinstance(fn, Mixing):
            calls[name] = lambda fn=fn: [fn(x, y, generator=g) for _ in range(rounds)]  # noqa: E731
        else:
            calls[name] = lambda fn=fn: [fn(x, generator=g) for _ in range(rounds)]  # noqa: E731
        calls[name]()  # warm-up
    samples = {name: [] for name in calls}
    for _ in range(repeats):  # interleaved: a burst of load from other programs hits every row
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    times = {name: statistics.median(t) / rounds / batch for name, t in samples.items()}
    base = times[contenders[0][0]]
    print(f"label mixing vs affine augmentation: batch {batch}, 28x28x1 float; machine "
          f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f} (now "
          f"{os.getloadavg()[0]:.1f}); torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {repeats} interleaved runs of {rounds} batches")
    print(f"{'what':42} {'us/image':>9} {'images/s':>11} {'vs affine':>10}")
    for name, seconds in times.items():
        print(f"{name:42} {seconds * 1e6:>9.2f} {1 / seconds:>11,.0f} {seconds / base:>9.2f}x")
    slowest = max(v for k, v in times.items() if not k.startswith("affine"))
    print(f"slowest label mixing costs {slowest / base:.2f}x the seed-002 affine augmentation per "
          f"image ({'at least as fast' if slowest <= base else 'SLOWER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
