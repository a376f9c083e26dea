"""Fine-tuning speed of keras.applications' MobileNetV2 and ResNet50 (issue 28, item 4): training
images/s with the backbone frozen and unfrozen, and inference images/s, at 160x160 and 224x224,
cnnkit against Keras 3 on TensorFlow and a plain PyTorch loop, in one run; then one image
through MobileNetV2 (224, 1000 classes) on onnxruntime.

The network on every side: the backbone (include_top=False, random weights: speed does not
depend on their values), global average pooling and a new Dense(10, softmax) head. Synthetic
uint8 RGB images and random labels (keras_baseline.synthetic_images), scaled to [0, 1] floats
as a Keras user feeds them; Adam 1e-3; frozen means the backbone's weights do not train and its
batch norms run in inference mode (Keras's trainable=False), unfrozen that everything trains.

- Keras: keras_applications.py in bench/.venv-keras (base.trainable = False, compile, fit; then
  True, compile, fit; then predict), float32 (Keras's default), one process per network and size.
- loop: torch_applications.py's modules (Keras's architecture written as torch users write it),
  channels_last, bf16 autocast where the CPU has bf16 math (--precision), a loop over tensor
  batches made before timing; frozen: backbone.requires_grad_(False) and .eval(), Adam on the
  head; inference: net.eval() under torch.inference_mode.
- cnnkit: cnnkit.keras.applications + compile + fit + predict, as a Keras user writes it, under
  mixed_precision.set_global_policy("mixed_bfloat16") where the loop runs bf16.

A training step is timed from one batch's end to the next, after --warmup untimed steps; an
inference figure is the median of --repeats predict calls on one batch after a warm-up call.
Rounds are interleaved (the machine's speed drifts), each figure the median of the rounds.
The onnxruntime line: `export_onnx` (the graph `cnnkit export` writes; its parity check is
tests/serve/test_export_applications.py's business, not timed here), then the median ms of
--calls single-image calls through cnnkit.Predictor and through a bare onnxruntime session,
alternating (each call after an untimed one).

    .venv/bin/python bench/bench_pretrained.py        # quick: --steps 1 --repeats 1 ...
        [--models mobilenetv2 resnet50] [--sizes 160 224] [--batch-size 16] [--steps 2]
        [--warmup 2] [--repeats 3] [--infer-repeats 3] [--calls 50] [--precision auto|bf16|fp32]
        [--threads N] [--no-keras] [--no-onnx]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_graph import batch_timer  # noqa: E402
from common import keras, machine_line, median, warn_if_loaded  # noqa: E402
from keras_baseline import synthetic_images  # noqa: E402
from torch_applications import Classifier  # noqa: E402

SEED, CLASSES = 777, 10
MODES = ("frozen", "unfrozen", "infer")
SIDES = {"tf": "Keras 3 on TensorFlow (fp32)", "loop": "PyTorch loop", "cnnkit": "cnnkit.keras"}


def timed_calls(fn, warmup: int, count: int) -> list[float]:
    """Seconds of each of `count` calls of fn() after `warmup` untimed ones."""
    times = []
    for i in range(warmup + count):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------- the plain PyTorch loop

def loop_round(name, x, y, batch, warmup, steps, repeats, bf16) -> dict:
    torch.manual_seed(SEED)
    net = Classifier(name, CLASSES).to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)
    xt = xt.contiguous(memory_format=torch.channels_last)  # (N, 3, H, W), NHWC in memory
    yt = torch.from_numpy(y)
    out = {}
    for mode in ("frozen", "unfrozen"):
        trainable = mode == "unfrozen"
        net.train()
        net.backbone.requires_grad_(trainable)
        if not trainable:
            net.backbone.eval()  # its batch norms on their running statistics
        opt = torch.optim.Adam(net.parameters() if trainable else net.head.parameters(), lr=1e-3)
        batches = iter(range(warmup + steps))

        def step():
            i = next(batches)
            xb, yb = xt[i * batch:(i + 1) * batch], yt[i * batch:(i + 1) * batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(xb)
            loss = nn.functional.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out[mode] = batch / median(timed_calls(step, warmup, steps))
    net.eval()

    def infer():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            net(xt[:batch]).float().softmax(1)
    out["infer"] = batch / median(timed_calls(infer, 1, repeats))
    return out


# ---------------------------------------------------------------- cnnkit

def cnnkit_model(name: str, size: int):
    """backbone + GlobalAveragePooling2D + Dense(10, softmax), from cnnkit.keras; and the base."""
    from cnnkit import keras as ck

    builder = {"mobilenetv2": ck.applications.MobileNetV2, "resnet50": ck.applications.ResNet50}
    base = builder[name](include_top=False, weights=None, input_shape=(size, size, 3))
    inputs = ck.Input((size, size, 3))
    features = ck.layers.GlobalAveragePooling2D()(base(inputs))
    return ck.Model(inputs, ck.layers.Dense(CLASSES, activation="softmax")(features)), base


def cnnkit_round(name, x, y, batch, warmup, steps, repeats, bf16) -> dict:
    from cnnkit import keras as ck

    ck.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
    torch.manual_seed(SEED)
    model, base = cnnkit_model(name, x.shape[1])
    xf = x.astype(np.float32) / 255
    out = {}
    for mode in ("frozen", "unfrozen"):
        base.trainable = mode == "unfrozen"
        model.compile(optimizer=ck.optimizers.Adam(learning_rate=1e-3),
                      loss="sparse_categorical_crossentropy")
        timer = batch_timer(warmup)
        model.fit(xf, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        out[mode] = batch * len(timer.times) / sum(timer.times)
    out["infer"] = batch / median(timed_calls(
        lambda: model.predict(xf[:batch], batch_size=batch, verbose=0), 1, repeats))
    ck.mixed_precision.set_global_policy("float32")
    return out


# ---------------------------------------------------------------- Keras on TensorFlow

def keras_round(name, size, batch, warmup, steps, repeats, threads) -> dict | None:
    got = keras(["--model", name, "--size", str(size), "--batch-size", str(batch), "--warmup",
                 str(warmup), "--steps", str(steps), "--repeats", str(repeats),
                 "--threads", str(threads)], script="keras_applications.py")
    if got is None:
        return None
    out = {mode: batch * len(got[f"{mode}_batch_s"]) / sum(got[f"{mode}_batch_s"])
           for mode in ("frozen", "unfrozen")}
    out["infer"] = got["infer_images_per_s"]
    out["versions"] = f"TF {got['tf_version']}, Keras {got['keras_version']}"
    return out


# ---------------------------------------------------------------- onnxruntime, one image

def onnx_latency(calls: int, threads: int) -> dict:
    """Median ms of one 224x224 image through MobileNetV2 (1000 classes): cnnkit's Predictor
    on the exported file, and a bare onnxruntime session (its defaults, `threads` intra-op
    threads) on it."""
    import onnxruntime as ort

    import cnnkit
    from cnnkit import keras as ck
    from cnnkit.serve.onnx import export_onnx

    torch.manual_seed(SEED)
    model = ck.applications.MobileNetV2(weights=None)  # 224x224x3, 1000 classes: Keras's default
    image = synthetic_images(1, seed=1, size=224)[0]  # (1, 224, 224, 3) uint8
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mobilenetv2.onnx"
        export_onnx(model, path, check=False)
        predictor = cnnkit.Predictor(path, threads=threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        fns = {"cnnkit.Predictor (onnx)": lambda: predictor.predict(image),
               "bare onnxruntime session": lambda: session.run(None, {"pixels": image})}
        times = {label: [] for label in fns}
        for _ in range(calls):  # alternating call by call: the machine's drift hits both
            for label, fn in fns.items():
                times[label] += timed_calls(fn, 1, 1)
        return {label: 1000 * median(t) for label, t in times.items()}


# ---------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=("mobilenetv2", "resnet50"),
                    default=["mobilenetv2", "resnet50"], help="default: both")
    ap.add_argument("--sizes", nargs="+", type=int, default=[160, 224], help="default 160 224")
    ap.add_argument("--batch-size", type=int, default=16, help="default 16")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps; default 2")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first; default 2")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; default 3")
    ap.add_argument("--infer-repeats", type=int, default=3,
                    help="timed predict calls per round; default 3")
    ap.add_argument("--calls", type=int, default=50, help="onnxruntime single-image calls; "
                    "default 50")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="the loop's and cnnkit's; auto: bf16 where the CPU has bf16 math")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch's and TensorFlow's threads; default: the usable CPUs (%(default)s)."
                    " On a loaded machine 1 is steadier: torch's OpenMP threads wait for each "
                    "other at every op, and a descheduled one stalls the rest")
    ap.add_argument("--no-keras", action="store_true", help="without TensorFlow")
    ap.add_argument("--no-onnx", action="store_true", help="without the onnxruntime line")
    args = ap.parse_args()
    for key in ("batch_size", "steps", "repeats", "infer_repeats", "calls", "threads"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.warmup < 0 or min(args.sizes) < 32:
        ap.error("--warmup must be >= 0 and every --sizes value >= 32 (the applications' least)")
    return args


def print_table(name, size, args, med, runs, precision, versions):
    print(f"{name} {size}x{size}, batch {args.batch_size}, Adam 1e-3, {args.steps} timed steps "
          f"after {args.warmup} per fit, median of {args.repeats} rounds; images/s")
    print(f"  {'':40}{'frozen':>10}{'unfrozen':>10}{'inference':>11}")
    for key, label in SIDES.items():
        if key in med:
            label += "" if key == "tf" else f" ({precision})"
            print(f"  {label:40}" + "".join(f"{med[key][m]:{w},.1f}" for m, w in
                                             zip(MODES, (10, 10, 11)))
                  + (f"   {versions}" if key == "tf" else ""))
    for other, goal in (("tf", 1.5), ("loop", 1.0)):
        if other in med:
            print(f"  {'cnnkit / ' + SIDES[other].split(' (')[0]:40}" + "".join(
                f"{med['cnnkit'][m] / med[other][m]:{w - 1}.2f}x" for m, w in
                zip(MODES, (10, 10, 11))) + f"   (goal >= {goal}x)")
    spread = {k: ", ".join(f"{m} " + "/".join(f"{r[m]:.1f}" for r in v) for m in MODES)
              for k, v in runs.items()}
    print("  each round: " + "; ".join(f"{k}: {s}" for k, s in spread.items()))


def main():
    from cnnkit.train.device import cpu_has_bf16

    args = parse_args()
    torch.set_num_threads(args.threads)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and cpu_has_bf16())
    precision = "channels_last, bf16" if bf16 else "channels_last, fp32"
    print(machine_line())
    warn_if_loaded()
    b, w, s = args.batch_size, args.warmup, args.steps
    for name in args.models:
        for size in args.sizes:
            x, y = synthetic_images((w + s) * b, seed=0, size=size)
            runs, versions = {"tf": [], "loop": [], "cnnkit": []}, ""
            for _ in range(args.repeats):  # interleaved: every side once per round
                k = None if args.no_keras else keras_round(name, size, b, w, s, args.infer_repeats,
                                                           args.threads)
                if k is not None:
                    versions = k.pop("versions")
                    runs["tf"].append(k)
                runs["loop"].append(loop_round(name, x, y, b, w, s, args.infer_repeats, bf16))
                runs["cnnkit"].append(cnnkit_round(name, x, y, b, w, s, args.infer_repeats, bf16))
            med = {k: {m: median([r[m] for r in v]) for m in MODES} for k, v in runs.items() if v}
            print_table(name, size, args, med, {k: v for k, v in runs.items() if v},
                        precision.split(", ")[1], versions)
    if not args.no_onnx:
        ms = onnx_latency(args.calls, args.threads)
        print(f"MobileNetV2 224x224, 1000 classes, one uint8 image, median of {args.calls} calls "
              "(goal < 5 ms): " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    print(machine_line())  # the load again, after the runs


if __name__ == "__main__":
    main()
