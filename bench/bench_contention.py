"""Training throughput under load: cnnkit's default threads beside cnnkit on 1 thread, seed 003's
own PyTorch loop and Keras/TensorFlow, with nothing else running, with one busy program pinned
to one of the two cores, and with a second cnnkit training run beside it. Interleaved: every
round runs each load, and under it each implementation, so slow drifts of a shared machine
weigh on all alike.

    .venv/bin/python bench/bench_contention.py [--models seed003-cnn fast-cnn] [--steps 150]
        [--repeats 3] [--loads none busy cnnkit] [--no-keras]

Each measurement trains `--steps` batches of 100 Fashion-MNIST images from fresh weights (Adam
1e-3) and reports samples/s over its whole fit call (cnnkit's thread probe included). Prints the
medians and the issue's ratios: under load, cnnkit's default / cnnkit on 1 thread (goal >= 1: never
slower) and / Keras (>= 1.5); without load, / Keras (>= 1.5) and / seed 003's loop (>= 2).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PerSampleDataset, seed003_net  # noqa: E402
from common import keras, machine_line, median  # noqa: E402

BATCH = 100
GOALS = {"none": {"keras": 1.5, "seed003 loop": 2.0}, "busy": {"cnnkit 1 thread": 1.0, "keras": 1.5},
         "cnnkit": {"cnnkit 1 thread": 1.0, "keras": 1.5}}
COMPETING_RUN = """
import cnnkit
while True:
    cnnkit.run(cnnkit.RunSpec.from_recipe("fast", epochs=50, verbose=0, artifacts="none"))
"""


class Load:
    """A competing program for the duration of a `with` block: `busy` is a busy loop pinned to
    the second CPU this benchmark may use; `cnnkit` is another cnnkit training run (its default
    threads); `none` is nothing."""

    def __init__(self, kind: str, cpus: list[int]):
        self.kind, self.cpus, self.proc = kind, cpus, None

    def __enter__(self):
        if self.kind == "busy":
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                         start_new_session=True)
            os.sched_setaffinity(self.proc.pid, {self.cpus[1]})
        elif self.kind == "cnnkit":
            env = {k: v for k, v in os.environ.items() if k != "CNNKIT_THREADS"}
            self.proc = subprocess.Popen([sys.executable, "-c", COMPETING_RUN], env=env,
                                         start_new_session=True)
            time.sleep(6)  # past its import and data loading: training when we start
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def cnnkit_fit(name, ds, steps, threads):
    from cnnkit.model.presets import create_model
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.threads import kept_threads
    from cnnkit.train.trainer import Trainer

    n = steps * BATCH
    torch.manual_seed(777)
    model = create_model(name)
    model.class_names = ds.class_names
    with kept_threads():
        trainer = Trainer(model, TrainConfig(epochs=1, batch_size=BATCH, optimizer="adam",
                                             lr=1e-3, seed=777, verbose=0, threads=threads))
        t0 = time.perf_counter()
        trainer.fit(ds.x_train[:n], ds.y_train[:n])
        dt = time.perf_counter() - t0
    used = trainer.threads.record()["used"]
    return n / dt, "/".join(f"{k}t:{v}" for k, v in used.items())


def seed003_loop(name, x, y, steps):
    """Seed 003's own loop (per-sample dataset, DataLoader, torch's default threads)."""
    torch.manual_seed(777)
    net = seed003_net("seed003-cnn" if name == "fast-cnn" else name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = steps * BATCH
    loader = torch.utils.data.DataLoader(PerSampleDataset(x[:n], y[:n]), batch_size=BATCH,
                                         shuffle=True)
    t0 = time.perf_counter()
    for xb, yb in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(net(xb), yb).backward()
        opt.step()
    return n / (time.perf_counter() - t0), f"{torch.get_num_threads()}t"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["seed003-cnn", "fast-cnn"])
    ap.add_argument("--loads", nargs="+", default=["none", "busy", "cnnkit"],
                    choices=["none", "busy", "cnnkit"])
    ap.add_argument("--steps", type=int, default=150, help="batches of 100 per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (medians are printed)")
    ap.add_argument("--no-keras", action="store_true")
    args = ap.parse_args()
    os.environ.pop("CNNKIT_THREADS", None)  # the default policy is what is measured

    from cnnkit.data import load_dataset

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("bench_contention needs 2 CPUs (one for the busy program to share)")
    cpus = cpus[:2]
    os.sched_setaffinity(0, set(cpus))  # the benchmark, and its children, on those two
    print(machine_line())
    print(f"CPUs {cpus}; busy program pinned to CPU {cpus[1]}; {args.steps} steps of {BATCH} "
          f"per measurement; {args.repeats} rounds")
    ds = load_dataset("fashion-mnist")
    x, y = ds.x_train[..., 0].numpy(), ds.y_train.numpy()
    impls = ["cnnkit default", "cnnkit 1 thread", "seed003 loop"] + ([] if args.no_keras
                                                                      else ["keras"])
    results = {}  # (load, model, impl) -> [samples/s]
    notes = {}
    for r in range(args.repeats):
        for load in args.loads:
            with Load(load, cpus):
                for name in args.models:
                    for impl in impls:
                        if impl == "cnnkit default":
                            sps, note = cnnkit_fit(name, ds, args.steps, None)
                        elif impl == "cnnkit 1 thread":
                            sps, note = cnnkit_fit(name, ds, args.steps, 1)
                        elif impl == "seed003 loop":
                            if name != "seed003-cnn":
                                continue  # seed 003's loop trains seed 003's model
                            sps, note = seed003_loop(name, x, y, args.steps)
                        else:
                            k = keras(["--model", name, "--task", "train", "--batch-size",
                                       str(BATCH), "--steps", str(args.steps)])
                            if k is None:
                                continue
                            sps, note = k["samples_per_s"], f"{k['threads']}t"
                        results.setdefault((load, name, impl), []).append(sps)
                        notes.setdefault((load, name, impl), []).append(note)
                        print(f"  round {r + 1} load {load:6} {name:12} {impl:16} "
                              f"{sps:8,.0f} samples/s  ({note})", flush=True)
    print(f"\n{machine_line()}")
    print(f"medians of {args.repeats} rounds, samples/s (threads used per step in brackets):")
    for load in args.loads:
        for name in args.models:
            base = results.get((load, name, "cnnkit default"))
            if not base:
                continue
            ours = median(base)
            line = [f"load {load:6} {name:12} cnnkit default {ours:7,.0f}"]
            for impl in impls[1:]:
                vals = results.get((load, name, impl))
                if not vals:
                    continue
                ratio = ours / median(vals)
                goal = GOALS[load].get(impl)
                mark = "" if goal is None else f" {'OK' if ratio >= goal else 'MISSED'} (goal >= {goal})"
                line.append(f"{impl} {median(vals):7,.0f} -> {ratio:.2f}x{mark}")
            print(" | ".join(line) + f"   [default used {', '.join(notes[(load, name, 'cnnkit default')])}]")


if __name__ == "__main__":
    main()
