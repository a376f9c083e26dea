"""Inference: images/s over the 10,000 Fashion-MNIST test images, and warm single-image latency,
for cnnkit on PyTorch, cnnkit on onnxruntime (`cnnkit.Predictor(runtime="onnx")`, the graph
`cnnkit export` writes), plain eager PyTorch and onnxruntime (the same weights), and Keras on
TensorFlow, in one run. Also what starting an onnx Predictor costs, and from how many images
a one-off job wins it back: the figures behind `runtime="auto"` (cnnkit/serve/predictor.py).

    .venv/bin/python bench/bench_infer.py [--model seed003-cnn] [--repeats 5] [--no-keras]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import keras, machine_line, median, warn_if_loaded  # noqa: E402


def interleaved(calls: dict, rounds: int = 7, per_round: int = 60) -> dict:
    """{name: median seconds per call}: each call timed in turn within every round, so drift in
    the machine's speed (large on shared VMs) hits all of them alike."""
    out = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(10):
                fn()
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[name].append(median(times))
    return {name: median(v) for name, v in out.items()}


START = """
import sys, time
import numpy as np
import cnnkit
model = cnnkit.load(sys.argv[1])
t0 = time.perf_counter()
cnnkit.Predictor(model, runtime=sys.argv[2]).predict(np.zeros(model.input_shape, np.uint8))
print(time.perf_counter() - t0)
"""


def start_cost(saved, runtime: str, repeats: int = 3) -> float:
    """Seconds from a loaded model to its first prediction, in a fresh process (median)."""
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", START, str(saved), runtime],
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="seed003-cnn")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-images", type=int, default=20000,
                    help="train one epoch on this many images first (default 20000)")
    ap.add_argument("--no-keras", action="store_true")
    args = ap.parse_args()

    import tempfile

    import onnxruntime as ort

    import cnnkit
    from cnnkit.data import load_dataset
    from cnnkit.model.presets import create_model
    from cnnkit.serve.onnx import ORT_BATCH, model_bytes, session_options
    from cnnkit.serve.predictor import cpu_count
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    print(machine_line())
    print(f"onnxruntime {ort.__version__}; CPUs this process may use: {cpu_count()}")
    warn_if_loaded()
    load_before = os.getloadavg()
    ds = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = create_model(args.model)
    model.class_names = ds.class_names
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=100, seed=0, verbose=0))
    if args.train_images:  # trained weights: accuracy is meaningful
        trainer.fit(ds.x_train[:args.train_images], ds.y_train[:args.train_images])
    model.net.eval()
    n = len(ds.x_test)
    xt, yt = ds.x_test, ds.y_test.numpy()
    xn = xt.numpy()

    def acc(probs):
        return float((np.asarray(probs).argmax(1) == yt).mean())

    net = model.net
    xf = xt.permute(0, 3, 1, 2).float().div(255).contiguous()

    def eager():  # plain eager PyTorch: same module, NCHW float input made up front
        with torch.no_grad():
            return torch.cat([net(xf[i:i + 1000]) for i in range(0, n, 1000)])

    onnx_p = cnnkit.Predictor(model, runtime="onnx")
    session = ort.InferenceSession(model_bytes(model), session_options(None),
                                   providers=["CPUExecutionProvider"])
    one_thread = ort.InferenceSession(model_bytes(model), session_options(1),
                                      providers=["CPUExecutionProvider"])

    def batches(s, bs):
        return lambda: np.concatenate([s.run(None, {"pixels": xn[i:i + bs]})[0]
                                       for i in range(0, n, bs)])
    calls = {  # what -> a call predicting all n images
        "cnnkit evaluate path (torch)": lambda: model.predict(xt, TrainConfig.eval_batch_size),
        "cnnkit Predictor, torch": lambda: model.predict(xt),
        "eager PyTorch net(x), batch 1000": eager,
        f"cnnkit Predictor, onnx (batch {ORT_BATCH})": lambda: onnx_p.predict(xt),
        "onnxruntime session.run, batch 100": batches(session, 100),
        "onnxruntime session.run, batch 1000": batches(session, 1000),
        "onnxruntime, 1 thread, batch 100": batches(one_thread, 100),
    }
    accuracy = {what: acc(fn()) for what, fn in calls.items()}  # and a warm-up
    took = {what: [] for what in calls}
    for _ in range(args.repeats):  # interleaved: drift hits every variant alike
        for what, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            took[what].append(time.perf_counter() - t0)
    rows = [(what, n / median(took[what]), accuracy[what]) for what in calls]

    # single image, warm, in process
    one, x1 = xn[0], xf[:1]

    def eager_one():
        with torch.no_grad():
            net(x1)
    lat = interleaved({"torch": lambda: model.predict(one), "eager": eager_one,
                       "onnx": lambda: onnx_p.predict(one),
                       "session": lambda: session.run(None, {"pixels": xn[:1]}),
                       "session1": lambda: one_thread.run(None, {"pixels": xn[:1]})})

    # start-up: a loaded model to its first prediction, fresh processes
    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/m")
        start = {rt: start_cost(f"{tmp}/m", rt) for rt in ("torch", "onnx")}

    k = None if args.no_keras else keras(["--model", args.model, "--task", "predict"])
    kl = None if args.no_keras else keras(["--model", args.model, "--task", "latency"])
    load_after = os.getloadavg()

    print(f"\n{args.model}, {n:,} Fashion-MNIST test images "
          f"({'after one epoch on %s images' % f'{args.train_images:,}' if args.train_images else 'untrained'})")
    for what, ips, a in rows:
        print(f"  {what:38s} {ips:9,.0f} images/s" + (f"   accuracy {a:.4f}" if a is not None else ""))
    by = {what: ips for what, ips, _ in rows}
    t_torch, t_onnx = by["cnnkit Predictor, torch"], by[f"cnnkit Predictor, onnx (batch {ORT_BATCH})"]
    if k:
        print(f"  {'Keras predict, batch 32 (its default)':38s} {k['images_per_s']:9,.0f} images/s   "
              f"accuracy {k['test_accuracy']:.4f} (the same layers, untrained: speed only)")
        print(f"  {'Keras predict, batch 1000':38s} {k['images_per_s_b1000']:9,.0f} images/s")
    else:
        print(f"  {'Keras predict':38s} unavailable (bench/.venv-keras: run bench/setup_keras.sh)")
    print(f"  ratio onnx / torch Predictor: {t_onnx / t_torch:.2f}x")
    if k:
        print(f"  ratio onnx Predictor / Keras predict: {t_onnx / k['images_per_s']:.2f}x (goal ≥ 3x)")
    print("\n  single image, warm, in process (median of 7 interleaved rounds of 60 calls):")
    print(f"    cnnkit Predictor onnx .predict   {1e3 * lat['onnx']:.3f} ms   (goal ≤ 0.15 ms)")
    print(f"    onnxruntime session.run          {1e3 * lat['session']:.3f} ms  "
          f"(1 thread: {1e3 * lat['session1']:.3f} ms)")
    print(f"    cnnkit model.predict (torch)     {1e3 * lat['torch']:.3f} ms")
    print(f"    eager PyTorch net(x)             {1e3 * lat['eager']:.3f} ms")
    if kl:
        print(f"    Keras model(x)                   {kl['latency_ms']:.3f} ms "
              f"(predict {kl['latency_predict_ms']:.3f} ms)")
    else:
        print("    Keras                            unavailable")
    extra = start["onnx"] - start["torch"]
    saving = 1 / t_torch - 1 / t_onnx  # seconds saved per image in batches
    even = extra / saving if saving > 0 else float("inf")
    print(f"\n  start, loaded model to first prediction (fresh process): torch {start['torch']:.2f} s, "
          f"onnx {start['onnx']:.2f} s (export + `import onnx` + session)")
    print(f"  a one-off job wins the onnx start back from ~{even:,.0f} images "
          f"(auto: onnx from cnnkit.serve.predictor.AUTO_ONNX_MIN_IMAGES)")
    print(f"\n  load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
