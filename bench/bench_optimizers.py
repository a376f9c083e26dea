"""Optimizer step time: cnnkit's registry (Keras's rules) against torch.optim's kernels (the
baseline, timed in the same run), on seed003-cnn's parameters with fixed random gradients.

    python bench/bench_optimizers.py [--steps 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, median, warn_if_loaded  # noqa: E402

BASELINES = {  # registry name -> torch.optim equivalent with Keras's defaults
    "sgd": lambda o, p: o.SGD(p, lr=0.01, momentum=0.9, foreach=False),
    "adagrad": lambda o, p: o.Adagrad(p, lr=0.001, initial_accumulator_value=0.1, eps=1e-7,
                                      fused=True),
    "rmsprop": lambda o, p: o.RMSprop(p, lr=0.001, alpha=0.9, eps=1e-7, foreach=True),
    "adam": lambda o, p: o.Adam(p, lr=0.001, eps=1e-7, fused=True),
    "adamw": lambda o, p: o.AdamW(p, lr=0.001, eps=1e-7, weight_decay=0.004, fused=True),
}


def per_step(opt, params, grads, steps: int) -> float:
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()  # state created outside the timing
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        times.append((time.perf_counter() - t0) / steps)
    return median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    import torch

    from cnnkit.model.presets import create_model
    from cnnkit.train.optim import make_optimizer

    warn_if_loaded()
    print(machine_line())
    net = create_model("seed003-cnn").net
    shapes = [p.shape for p in net.parameters()]
    print(f"seed003-cnn: {sum(p.numel() for p in net.parameters()):,} parameters, "
          f"{len(shapes)} tensors; microseconds per step (median of 5 x {args.steps})")
    print(f"{'optimizer':10} {'cnnkit':>8} {'torch.optim':>12} {'ratio':>6}")
    for name, baseline in BASELINES.items():
        gen = torch.Generator().manual_seed(0)
        grads = [torch.randn(s, generator=gen) * 1e-3 for s in shapes]
        ours_p = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        theirs_p = [torch.nn.Parameter(p.detach().clone()) for p in ours_p]
        momentum = 0.9 if name == "sgd" else 0.0
        ours = per_step(make_optimizer(name, ours_p, momentum=momentum), ours_p, grads, args.steps)
        theirs = per_step(baseline(torch.optim, theirs_p), theirs_p, grads, args.steps)
        print(f"{name:10} {ours:8.0f} {theirs:12.0f} {ours / theirs:6.2f}")
    print(machine_line().split(", ")[-1])


if __name__ == "__main__":
    main()
