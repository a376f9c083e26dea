"""What weight averaging (`--ema`) costs: interleaved training steps of fast-cnn (batch 128)
with and without it, and one averaging update alone.

    .venv/bin/python bench/bench_ema.py [--rounds 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, warn_if_loaded  # noqa: E402

from cnnkit.model.presets import create_model  # noqa: E402
from cnnkit.train.trainer import TrainConfig, Trainer  # noqa: E402


class _NoSchedule:
    lr = 0.0

    def step(self):
        pass


def make_trainer(ema):
    model = create_model("fast-cnn")
    trainer = Trainer(model, TrainConfig(batch_size=128, lr=1e-3, seed=0, verbose=0, ema=ema))
    trainer._setup_loss(torch.zeros(1, 28, 28, 1, dtype=torch.uint8), [torch.arange(10)])
    trainer.schedule = _NoSchedule()
    model.net.train()
    return trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    args = p.parse_args()
    print(machine_line())
    warn_if_loaded()
    xb = torch.rand(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    yb = torch.randint(0, 10, (128,))
    trainers = {"without": make_trainer(None), "with --ema 0.999": make_trainer(0.999)}
    times = {k: [] for k in trainers}
    for t in trainers.values():
        for _ in range(5):
            t._train_step(xb, yb)
    for _ in range(args.rounds):  # interleaved: the host's speed drifts
        for name, t in trainers.items():
            t0 = time.perf_counter()
            for _ in range(20):
                t._train_step(xb, yb)
            times[name].append((time.perf_counter() - t0) / 20 * 1e3)
    for name, v in times.items():
        print(f"step {name}: median {median(v):.2f} ms ({min(v):.2f}-{max(v):.2f})")
    average = trainers["with --ema 0.999"].average
    t0 = time.perf_counter()
    for _ in range(1000):
        average.update()
    update_ms = time.perf_counter() - t0  # 1000 calls: seconds == ms per call
    weights = sum(p.numel() for p in trainers["without"].model.net.parameters())
    print(f"one averaging update ({weights:,} weights): {update_ms:.3f} ms, "
          f"{update_ms / median(times['without']):.2%} of a step")


if __name__ == "__main__":
    main()
