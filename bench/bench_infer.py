"""Inference: images/s over the 10,000 Fashion-MNIST test images, and warm single-image latency,
for cnnkit, plain eager PyTorch (the same weights) and Keras on TensorFlow, in one run.

    .venv/bin/python bench/bench_infer.py [--model seed003-cnn] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import keras, machine_line, median, warn_if_loaded  # noqa: E402


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="seed003-cnn")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-keras", action="store_true")
    args = ap.parse_args()

    from cnnkit.data import load_dataset
    from cnnkit.model.presets import create_model
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    print(machine_line())
    warn_if_loaded()
    ds = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = create_model(args.model)
    model.class_names = ds.class_names
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=100, seed=0, verbose=0))
    trainer.fit(ds.x_train[:20000], ds.y_train[:20000])  # trained weights: accuracy is meaningful
    n = len(ds.x_test)

    # cnnkit: the evaluate path (uint8 batches → logits)
    c_time = timed(lambda: trainer.predict_logits(ds.x_test), args.repeats)
    c_acc = float((trainer.predict_logits(ds.x_test).argmax(1) == ds.y_test).float().mean())

    # plain eager PyTorch: same module, NCHW float input prepared up front, batches of 1000
    net = model.net.eval()
    xf = ds.x_test.permute(0, 3, 1, 2).float().div(255).contiguous()

    def eager():
        with torch.no_grad():
            return torch.cat([net(xf[i:i + 1000]) for i in range(0, n, 1000)])
    e_time = timed(eager, args.repeats)
    e_acc = float((eager().argmax(1) == ds.y_test).float().mean())

    # single image, warm, in process: cnnkit and eager PyTorch interleaved in rounds, so that
    # drift in the machine's speed (large on shared VMs) hits both alike
    one = ds.x_test[0].numpy()
    x1 = xf[:1]

    def eager_one():
        with torch.no_grad():
            net(x1)
    calls = {"predict": lambda: model.predict(one), "eager": eager_one}
    rounds = {name: [] for name in calls}
    for _ in range(7):
        for name, fn in calls.items():
            for _ in range(10):
                fn()
            times = []
            for _ in range(60):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rounds[name].append(median(times))
    lat, elat = rounds["predict"], rounds["eager"]

    k = None if args.no_keras else keras(["--model", args.model, "--task", "predict"])
    kl = None if args.no_keras else keras(["--model", args.model, "--task", "latency"])
    print(f"\n{args.model}, {n:,} test images")
    print(f"  cnnkit evaluate path   {n / c_time:9,.0f} images/s   accuracy {c_acc:.4f}")
    print(f"  eager PyTorch          {n / e_time:9,.0f} images/s   accuracy {e_acc:.4f}")
    if k:
        print(f"  Keras predict          {k['images_per_s']:9,.0f} images/s (batch 32, Keras's default)")
        print(f"  ratio cnnkit / Keras predict: {n / c_time / k['images_per_s']:.2f}x (goal ≥ 1.5x)")
    print(f"  single image: cnnkit model.predict {1e3 * median(lat):.3f} ms, eager net(x) "
          f"{1e3 * median(elat):.3f} ms (warm; median of 7 interleaved rounds of 60 calls; goal ≤ 0.5 ms)")
    if kl:
        print(f"  single image: Keras model(x) {kl['latency_ms']:.3f} ms")


if __name__ == "__main__":
    main()
