"""cnnkit's own CPU kernels (cnnkit.kernels) against torch's ops, side by side.

    .venv/bin/python bench/bench_kernels.py                     # steps, ops and 4 `fast` runs
    .venv/bin/python bench/bench_kernels.py --steps-only --models fast-cnn-dense seed003-cnn
    .venv/bin/python bench/bench_kernels.py --steps-only --models fast-cnn-dense --rounds 3 \
        --calls 10                                              # short: ~2 minutes

1. Training steps (batch 128, Adam, bf16 autocast where the CPU has bf16, channels_last), one
   process, in rotating rounds: cnnkit's kernels, torch's eager ops (`cnnkit.kernels.disabled()`)
   and torch.compile (inductor; the compile's own time is the first step, shown apart): median
   ms per step and the ratios, for each model. torch.compile is the alternative to hand-written
   kernels, so this column re-checks that choice on each machine (`--no-compile` skips it).
2. The ops alone (forward and backward, one call each): the stem (first conv + 2x2 pool), the
   2x2 pools of stages 2 and 3, batch norm + ReLU at each stage's size.
3. `cnnkit train --recipe fast --seed S --threads 2` in fresh processes, CNNKIT_KERNELS=auto
   against CNNKIT_KERNELS=torch, ABBA: time to the test result, training time and accuracy.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, training_step, warn_if_loaded  # noqa: E402


def _step_fn(name, bf16, compiled=False):
    import torch

    from cnnkit.model.presets import create_model

    torch.manual_seed(0)
    return training_step(create_model(name, input_shape=(28, 28, 1), num_classes=10), bf16=bf16,
                         compiled=compiled)


def _timed(fn, calls):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e3


def steps(models, rounds, calls, bf16, compiled=True):
    from cnnkit import kernels

    sides = ("cnnkit", "torch", "compile") if compiled else ("cnnkit", "torch")
    print(f"\n1. training steps, batch 128 ({'bf16' if bf16 else 'fp32'}), ms per step, "
          f"median of {rounds} rotating rounds of {calls}")
    for name in models:
        fns = {"cnnkit": _step_fn(name, bf16), "torch": _step_fn(name, bf16)}
        compile_s = None
        if compiled:
            fns["compile"] = _step_fn(name, bf16, compiled=True)
            t = time.perf_counter()
            fns["compile"]()  # the first call compiles (forward and backward graphs)
            compile_s = time.perf_counter() - t
        times = {side: [] for side in sides}
        off = {"torch": kernels.disabled}
        for side in sides:  # warm every path (allocator, oneDNN primitives)
            with off.get(side, contextlib.nullcontext)():
                _timed(fns[side], 10)
        for r in range(rounds):
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                with off.get(side, contextlib.nullcontext)():
                    times[side].append(_timed(fns[side], calls))
        ms = {side: median(times[side]) for side in sides}
        line = (f"  {name:16s} kernels {ms['cnnkit']:6.2f}  torch eager {ms['torch']:6.2f} "
                f"({ms['torch'] / ms['cnnkit']:.2f}x)")
        if compiled:
            line += (f"  torch.compile {ms['compile']:6.2f} ({ms['compile'] / ms['cnnkit']:.2f}x, "
                     f"compiled in {compile_s:.0f} s)")
        print(f"{line}  (load {os.getloadavg()[0]:.2f})", flush=True)


def ops(bf16, calls=60):
    import torch
    from torch import nn

    from cnnkit import kernels
    from cnnkit.kernels.fuse import BNReLU, Stem
    from cnnkit.layers.nn import Conv2d, MaxPool2d

    dtype = torch.bfloat16 if bf16 else torch.float32
    print(f"\n2. ops alone, batch 128, forward + backward, microseconds (median of 7 rounds)")

    def case(label, make_input, module_fn):
        x = make_input()
        fn = module_fn()

        def call():
            xi = x.detach().requires_grad_(x.dtype.is_floating_point and x.requires_grad)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and label == "stem"):
                y = fn(xi)
            y.backward(torch.ones_like(y))
        out = {}
        for side in ("cnnkit", "torch"):
            with kernels.disabled() if side == "torch" else contextlib.nullcontext():
                _timed(call, 10)
                out[side] = median([_timed(call, calls) * 1e3 for _ in range(7)])
        print(f"  {label:34s} kernels {out['cnnkit']:7.0f}  torch {out['torch']:7.0f}  "
              f"{out['torch'] / out['cnnkit']:.2f}x")

    def images(c, s, grad=True):
        t = torch.randn(128, c, s, s).to(dtype if grad else torch.float32)
        return t.contiguous(memory_format=torch.channels_last).requires_grad_(grad)

    conv = Conv2d(1, 16, (3, 3), (1, 1), (1, 1, 1, 1), bias=False).to(
        memory_format=torch.channels_last)
    pool1 = MaxPool2d((2, 2), (2, 2), (0, 0, 0, 0))
    case("stem 28x28x1 -> 14x14x16", lambda: images(1, 28, grad=False).uniform_(),
         lambda: Stem(conv, pool1))
    for c, s in ((32, 14), (64, 7)):
        pool = MaxPool2d((2, 2), (2, 2), (0, 0, 0, 0))
        case(f"2x2 max-pool {s}x{s}x{c}", lambda c=c, s=s: images(c, s), lambda p=pool: p)
    for c, s in ((16, 14), (32, 7), (64, 3)):
        bn, relu = nn.BatchNorm2d(c), nn.ReLU()
        case(f"batch norm + ReLU {s}x{s}x{c}", lambda c=c, s=s: images(c, s),
             lambda bn=bn, relu=relu: BNReLU(bn, relu))


def runs(rounds, seed):
    print(f"\n3. `cnnkit train --recipe fast --seed {seed} --threads 2`, fresh processes, ABBA")
    sides = ("auto", "torch")
    out = {s: [] for s in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                d = Path(tmp) / f"{side}-{r}"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cnnkit", "train", "--recipe", "fast",
                                "--seed", str(seed), "--threads", "2", "--out", str(d),
                                "--quiet"], check=True,
                               env={**os.environ, "CNNKIT_KERNELS": side})
                wall = time.perf_counter() - t0
                m = json.loads((d / "metrics.json").read_text())
                kern = json.loads((d / "config.json").read_text())["resolved"]["kernels"]
                res = {"wall": wall, "result": m["result_time_s"], "train": m["train_time_s"],
                       "accuracy": m["test_accuracy"]}
                out[side].append(res)
                print(f"  CNNKIT_KERNELS={side:5s} result after {res['result']:5.1f} s, training "
                      f"{res['train']:5.1f} s, wall {wall:5.1f} s, test accuracy "
                      f"{res['accuracy']:.4f}, kernels: {kern} (load {os.getloadavg()[0]:.2f})",
                      flush=True)
    med = {s: {k: median([x[k] for x in out[s]]) for k in ("result", "train", "wall")}
           for s in sides}
    for s in sides:
        print(f"  {s:5s} median: result {med[s]['result']:.1f} s, training {med[s]['train']:.1f} s, "
              f"wall {med[s]['wall']:.1f} s")
    print(f"  torch ops / kernels: time to result {med['torch']['result'] / med['auto']['result']:.2f}x, "
          f"training {med['torch']['train'] / med['auto']['train']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fast-cnn-dense", "seed003-cnn", "best-vgg"])
    ap.add_argument("--rounds", type=int, default=8, help="step rounds per side (default 8)")
    ap.add_argument("--calls", type=int, default=30, help="steps per round (default 30)")
    ap.add_argument("--runs", type=int, default=4, help="`fast` runs per side (default 4; 0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp32", action="store_true", help="steps and ops in float32, not bf16")
    ap.add_argument("--steps-only", action="store_true")
    ap.add_argument("--no-compile", action="store_true",
                    help="no torch.compile column (its compile takes a while)")
    args = ap.parse_args()

    import torch

    from cnnkit import kernels
    from cnnkit.train.device import cpu_has_bf16
    from cnnkit.train.memory import keep_freed_memory

    keep_freed_memory()  # as a run does (cnnkit.run): the kernels are timed as runs use them
    torch.set_num_threads(args.threads)
    print(machine_line())
    warn_if_loaded()
    kernels.build()  # explicitly, as `make setup` does: a forward pass never compiles them
    print(f"kernels: {kernels.description()}; {args.threads} threads")
    bf16 = cpu_has_bf16() and not args.fp32
    steps(args.models, args.rounds, args.calls, bf16, compiled=not args.no_compile)
    if not args.steps_only:
        ops(bf16)
        if args.runs:
            runs(args.runs, args.seed)


if __name__ == "__main__":
    main()
