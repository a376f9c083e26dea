"""Training images/s of a small residual network (issue 27, item 4): cnnkit's graph model
against Keras 3 on TensorFlow and a plain PyTorch loop, in one run.

The network, written three ways: a Conv2D(32, 3, same)-BN-ReLU stem, three stages of two basic
residual blocks (32, 64, 128 filters; conv-BN-ReLU-conv-BN, Add, ReLU; the first block of
stages 2 and 3 strides 2 with a 1x1 projection shortcut), global average pooling, Dense(10,
softmax); 64x64x3 input, ~0.70 M parameters. Same data for all: synthetic uint8 RGB images and
random labels (keras_baseline.synthetic_images; a throughput bench needs no real pictures),
batch 64, Adam 1e-3, float32.

- Keras: keras_baseline.py's `resnet-small` (its resnet_small, functional API, model.fit on
  float arrays in [0, 1]) in bench/.venv-keras, one process per round.
- loop: the same network as an nn.Module written the usual torch way (a BasicBlock class,
  nn.Conv2d(padding=1), nn.BatchNorm2d), default NCHW layout, a DataLoader-free loop over
  float tensor batches made once before timing: the fair, fast plain-PyTorch baseline.
- cnnkit core: the graph built with cnnkit.layers and `cnnkit.Model(inputs, outputs)`, trained
  by the core Trainer on the uint8 images at precision fp32.
- cnnkit.keras: the same graph with `cnnkit.keras` layers and `keras.Model`, compiled and fit
  on float arrays as a Keras user does.
- `--cnnkit module` (not by default): the loop's own nn.Module trained by cnnkit's engine
  (`cnnkit.fit(module, x, y)`, NCHW as for any module cnnkit did not build): the engine's cost
  apart from the graph's.

Each round builds every side afresh (seeded) and times `--steps` training steps after
`--warmup` untimed ones (Keras: a warm-up fit that traces the step, then the timed fit); a
step is timed from one batch's end to the next (Keras's and cnnkit's batch callbacks, the
loop's own clock), so each fit's set-up and end-of-epoch work are outside the figure. Rounds
are interleaved (the machine's speed drifts within minutes); each side's figure is the median
of the rounds.

    .venv/bin/python bench/bench_graph.py [--repeats 3] [--steps 2] [--warmup 1]
        [--batch-size 64] [--cnnkit core keras] [--precision fp32] [--skip-cnnkit] [--no-keras]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import keras, machine_line, median, warn_if_loaded  # noqa: E402
# numpy only: the same images, and the one definition of the network's graph
from keras_baseline import RESNET_STAGES, resnet_small, synthetic_images  # noqa: E402

SEED = 777


# ---------------------------------------------------------------- the plain PyTorch loop

class BasicBlock(nn.Module):
    """He et al.'s basic block as torch users write it (torchvision's resnet.BasicBlock)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        blocks, cin = [], 32
        for filters, stride in RESNET_STAGES:
            blocks += [BasicBlock(cin, filters, stride), BasicBlock(filters, filters)]
            cin = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):  # (B, 3, 64, 64) -> logits (B, 10)
        x = self.blocks(self.stem(x))
        return self.fc(x.mean((2, 3)))


def loop_round(x, y, batch: int, warmup: int, steps: int) -> list[float]:
    """Seconds of each timed step of the plain loop on a fresh network."""
    torch.manual_seed(SEED)
    net = ResNetSmall()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).contiguous()  # (N, 3, H, W)
    yt = torch.from_numpy(y)
    net.train()
    times, last = [], time.perf_counter()
    for i in range(warmup + steps):
        xb, yb = xt[i * batch:(i + 1) * batch], yt[i * batch:(i + 1) * batch]
        loss = nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - last)
        last = now
    return times


# ---------------------------------------------------------------- cnnkit

def batch_timer(warmup: int):
    """A cnnkit callback keeping the seconds of each step after the first `warmup`, timed as
    keras_baseline's BatchTimer times Keras's (batch end to batch end)."""
    from cnnkit.train.callbacks import Callback

    class BatchTimer(Callback):
        def __init__(self):
            self.times, self._last = [], None

        def on_train_batch_begin(self, batch, logs=None):
            if self._last is None:
                self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if batch >= warmup:
                self.times.append(now - self._last)
            self._last = now

    return BatchTimer()


def cnnkit_core_round(x, y, batch: int, warmup: int, steps: int,
                      precision: str = "fp32") -> list[float]:
    """The graph from cnnkit.layers, trained by the core Trainer on uint8 images (the engine
    scales them), at `precision` (fp32 as the others; auto: bf16 where the CPU has bf16 math)."""
    import cnnkit
    from cnnkit import layers
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    torch.manual_seed(SEED)
    model = resnet_small(layers, cnnkit.Model)
    timer = batch_timer(warmup)
    n = (warmup + steps) * batch
    Trainer(model, TrainConfig(epochs=1, batch_size=batch, optimizer="adam", lr=1e-3, seed=SEED,
                               verbose=0, precision=precision), [timer]).fit(
        torch.from_numpy(x[:n]), torch.from_numpy(y[:n]))
    return timer.times


def cnnkit_keras_round(x, y, batch: int, warmup: int, steps: int) -> list[float]:
    """The graph from cnnkit.keras's layers and Model, compiled and fit as Keras code is."""
    from cnnkit import keras as ck

    torch.manual_seed(SEED)
    model = resnet_small(ck.layers, ck.Model)
    model.compile(optimizer=ck.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy")
    timer = batch_timer(warmup)
    n = (warmup + steps) * batch
    model.fit(x[:n].astype(np.float32) / 255, y[:n], batch_size=batch, epochs=1, shuffle=False,
              verbose=0, callbacks=[timer])
    return timer.times


def cnnkit_module_round(x, y, batch: int, warmup: int, steps: int) -> list[float]:
    """The loop's nn.Module, trained by cnnkit's engine (cnnkit.fit on a module)."""
    from cnnkit.train.module import fit

    torch.manual_seed(SEED)
    timer = batch_timer(warmup)
    n = (warmup + steps) * batch
    fit(ResNetSmall(), torch.from_numpy(x[:n]), torch.from_numpy(y[:n]), epochs=1,
        batch_size=batch, optimizer="adam", lr=1e-3, seed=SEED, verbose=0, precision="fp32",
        callbacks=[timer])
    return timer.times


def keras_round(batch: int, warmup: int, steps: int) -> tuple[list[float], dict] | None:
    """Keras on TensorFlow in its own venv (keras_baseline.py's resnet-small)."""
    out = keras(["--model", "resnet-small", "--task", "train", "--batch-size", str(batch),
                 "--warmup", str(warmup), "--steps", str(steps), "--seed", "0"])
    return None if out is None else (out["batch_s"], out)


def keras_count(net: nn.Module) -> int:
    """Parameters as Keras's count_params counts them: batch norms' moving statistics too."""
    stats = sum(m.running_mean.numel() + m.running_var.numel() for m in net.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return sum(p.numel() for p in net.parameters()) + stats


def graph_count() -> int:
    import cnnkit
    from cnnkit import layers
    from cnnkit.model.module import as_model

    return keras_count(as_model(resnet_small(layers, cnnkit.Model)).net)


# ---------------------------------------------------------------- main

SIDES = {"loop": "PyTorch loop (NCHW)", "core": "cnnkit graph, core Trainer",
         "keras": "cnnkit.keras Model.fit", "module": "cnnkit.fit(the loop's module)",
         "tf": "Keras 3 on TensorFlow"}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median); default 3")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round; default 2")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first; default 1")
    ap.add_argument("--batch-size", type=int, default=64, help="default 64")
    ap.add_argument("--cnnkit", nargs="+", choices=("core", "keras", "module"),
                    default=["core", "keras"], help="cnnkit's ways to train: the graph by the core "
                    "Trainer, by cnnkit.keras, the loop's module by cnnkit.fit; default core keras")
    ap.add_argument("--precision", choices=("fp32", "auto"), default="fp32",
                    help="the core Trainer's precision; default fp32 (as Keras and the loop)")
    ap.add_argument("--skip-cnnkit", action="store_true", help="Keras and the loop only")
    ap.add_argument("--no-keras", action="store_true", help="without TensorFlow")
    args = ap.parse_args()
    for name in ("repeats", "steps", "warmup", "batch_size"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    print(machine_line())
    warn_if_loaded()
    b, w, s = args.batch_size, args.warmup, args.steps
    x, y = synthetic_images((w + s) * b, seed=0)  # the images keras_baseline makes for Keras
    rounds = {"loop": lambda: loop_round(x, y, b, w, s)}
    ways = {"core": lambda: cnnkit_core_round(x, y, b, w, s, args.precision),
            "keras": lambda: cnnkit_keras_round(x, y, b, w, s),
            "module": lambda: cnnkit_module_round(x, y, b, w, s)}
    for way in [] if args.skip_cnnkit else args.cnnkit:
        rounds[way] = ways[way]
    runs = {key: [] for key in rounds}
    tf_info = None
    for _ in range(args.repeats):  # interleaved: each round runs every side once
        if not args.no_keras:
            k = keras_round(b, w, s)
            if k is not None:
                runs.setdefault("tf", []).append(b * len(k[0]) / sum(k[0]))
                tf_info = k[1]
        for key, run in rounds.items():
            times = run()
            runs[key].append(b * len(times) / sum(times))
    med = {key: median(v) for key, v in runs.items() if v}

    fp32 = "fp32" if args.precision == "fp32" else "fp32 (the core Trainer: precision auto)"
    print(f"resnet_small (3 stages x 2 basic blocks, 64x64x3), batch {b}, Adam 1e-3, {fp32}, "
          f"synthetic uint8 images; {s} timed steps after {w} warm-up per round, median of "
          f"{args.repeats} interleaved rounds")
    for key, label in SIDES.items():
        if key in med:
            extra = f"   TF {tf_info['tf_version']}, Keras {tf_info['keras_version']}" \
                if key == "tf" else ""
            each = ", ".join(f"{v:,.1f}" for v in runs[key])
            print(f"  {label:30} {med[key]:8,.1f} images/s   (each: {each}){extra}")
    for key in [k for k in ("core", "keras", "module") if k in med]:
        if "tf" in med:
            print(f"  ratio {SIDES[key]} / Keras-TF: {med[key] / med['tf']:.2f}x (goal >= 1.5x)")
        print(f"  ratio {SIDES[key]} / loop:     {med[key] / med['loop']:.2f}x (goal >= 1.0x)")
    if "tf" in med:
        print(f"  ratio PyTorch loop / Keras-TF:  {med['loop'] / med['tf']:.2f}x")
    # the same network three ways: the same count (Keras's, batch-norm statistics included)
    counts = {"loop": keras_count(ResNetSmall())}
    counts.update({"Keras": tf_info["params"]} if tf_info else {})
    counts.update({} if args.skip_cnnkit or rounds.keys() <= {"loop", "module"}
                  else {"cnnkit graph": graph_count()})
    print("  parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(machine_line())  # the load again, after the runs


if __name__ == "__main__":
    main()
