"""Keras 3 on TensorFlow CPU: the baseline that cnnkit's benchmarks compare against.

Runs with bench/.venv-keras/bin/python (made by bench/setup_keras.sh), usually as a
subprocess of a benchmark in bench/, which reads the one JSON object printed by --json.
Keras is used the way the seeds use it (model.fit / evaluate / predict with numpy
arrays, Keras's own defaults: fp32, jit_compile="auto", which Keras resolves to no XLA
on a CPU-only machine),
so the figures are what a Keras user gets on this machine, not a tuned TF program.

    bench/.venv-keras/bin/python bench/keras_baseline.py --model seed003-cnn --task train --json
    ... --task train --steps 50          # quick: time 50 batches instead of one epoch
    ... --task predict | latency | recipe002
    ... --model resnet-small --task train --steps 2 --warmup 1 --batch-size 64
                                         # bench_graph.py's residual network, synthetic images

TF's intra- and inter-op thread pools are both set to the CPUs this process may use
(os.sched_getaffinity; 2 on the project machine), --threads overrides.
"""

import time

T_SCRIPT = time.perf_counter()  # before TensorFlow's import (seconds of its own)

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

MODELS = ("seed003-cnn", "seed002-fashion", "fast-cnn", "resnet-small")
TASKS = ("train", "predict", "latency", "recipe002")
N_CLASSES = 10
RESNET_STAGES = ((32, 1), (64, 2), (128, 2))  # resnet-small: (filters, first block's stride)
IDX_FILES = tuple(f"{s}-{k}-idx{d}-ubyte.gz" for s in ("train", "t10k")
                  for k, d in (("images", 3), ("labels", 1)))


def process_wall_s():
    """Seconds since this process started (so TF's import and data loading count)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - T_SCRIPT


# ---------------------------------------------------------------- data (numpy only)

def read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(data_dir):
    """((x_train, y_train), (x_test, y_test)); x float32 in [0, 1], shape (N, 28, 28, 1)."""
    out = []
    for split in ("train", "t10k"):
        img = Path(data_dir) / f"{split}-images-idx3-ubyte.gz"
        lab = Path(data_dir) / f"{split}-labels-idx1-ubyte.gz"
        x = read_idx(img, 16).reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
        y = read_idx(lab, 8).astype(np.int64)
        out.append((x, y))
    return tuple(out)


def synthetic_images(n, seed=0, size=64):
    """n random uint8 RGB images (n, size, size, 3) and labels 0..9: bench_graph.py's data,
    made by this one function in both venvs (a throughput bench needs no real pictures)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            rng.integers(0, N_CLASSES, n).astype(np.int64))


def stratified_split(y, val_fraction, seed):
    """Indices (train, val): val_fraction of every class goes to val, shuffled with seed."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


# ---------------------------------------------------------------- models (SEEDS.md)

def resnet_small(layers, model_class):
    """bench_graph.py's residual network, the one definition for Keras, cnnkit and
    cnnkit.keras: `layers` is keras.layers, cnnkit.layers or cnnkit.keras.layers (each has
    Input, Conv2D, BatchNormalization, Activation, Add, GlobalAveragePooling2D, Dense) and
    `model_class(inputs, outputs, name=...)` makes the functional model. A Conv-BN-ReLU stem of
    32, three stages (32, 64, 128 filters) of two basic blocks, conv-BN-ReLU-conv-BN + shortcut,
    ReLU; the first block of stages 2 and 3 strides 2 with a 1x1 projection shortcut."""
    L = layers

    def conv_bn(x, filters, kernel, strides=1):
        x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return L.BatchNormalization()(x)

    def block(x, cin, filters, strides):
        y = conv_bn(L.Activation("relu")(conv_bn(x, filters, 3, strides)), filters, 3)
        shortcut = conv_bn(x, filters, 1, strides) if strides != 1 or cin != filters else x
        return L.Activation("relu")(L.Add()([shortcut, y]))

    inputs = L.Input((64, 64, 3))
    x, cin = L.Activation("relu")(conv_bn(inputs, 32, 3)), 32
    for filters, strides in RESNET_STAGES:
        x = block(block(x, cin, filters, strides), filters, filters, 1)
        cin = filters
    outputs = L.Dense(N_CLASSES, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return model_class(inputs, outputs, name="resnet_small")


def build_model(name):
    """The seed model as Keras layers, compiled as its seed compiles it."""
    L = keras.layers
    if name == "resnet-small":
        model, loss = resnet_small(keras.layers, keras.Model), "sparse_categorical_crossentropy"
    elif name == "seed003-cnn":
        # PyTorch in seed 003; logits + from_logits CE is nn.CrossEntropyLoss's equivalent.
        layers = [L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(N_CLASSES)]
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif name == "fast-cnn":
        # cnnkit's preset: three stages of conv (no bias) -> 2x2 max-pool -> batch norm -> ReLU
        layers = []
        for width in (16, 32, 64):
            layers += [L.Conv2D(width, 3, padding="same", use_bias=False), L.MaxPooling2D(2),
                       L.BatchNormalization(momentum=0.9), L.Activation("relu")]
        layers += [L.Flatten(), L.Dense(N_CLASSES, activation="softmax")]
        loss = "sparse_categorical_crossentropy"
    else:  # seed002-fashion
        layers = [L.Conv2D(32, 3, activation="relu", padding="same"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, activation="relu", padding="same"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(100, activation="relu"), L.Dropout(0.4),
                  L.Dense(N_CLASSES, activation="softmax")]
        loss = "sparse_categorical_crossentropy"
    if name != "resnet-small":
        model = keras.Sequential([keras.Input(shape=(28, 28, 1))] + layers, name=name)
    jit = {"auto": "auto", "on": True, "off": False}[ARGS.jit]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss=loss,
                  metrics=["accuracy"], jit_compile=jit)
    return model


def reset_optimizer(model):
    """Zero Adam's moments and step count, so a warmed-up model trains like a fresh one."""
    for v in model.optimizer.variables:
        if "learning_rate" not in v.path:
            v.assign(np.zeros(v.shape, dtype=v.dtype))


def test_accuracy(model, x_test, y_test):
    return float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0, return_dict=True)["accuracy"])


# ---------------------------------------------------------------- tasks

def batch_timer():
    """A Keras callback keeping the seconds between consecutive batch ends in .times
    (defined here because keras is imported only in main, after the thread settings)."""

    class BatchTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self._last = [], None

        def on_train_batch_begin(self, batch, logs=None):
            if self._last is None:  # the first batch is measured from its begin
                self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            self.times.append(now - self._last)
            self._last = now

    return BatchTimer()


def task_train(data):
    """One epoch (or --steps batches) of model.fit, timed after a warm-up; then test accuracy."""
    (x_train, y_train), (x_test, y_test) = data
    bs = ARGS.batch_size or 100
    n = len(x_train) if ARGS.steps is None else min(len(x_train), ARGS.steps * bs)
    model = build_model(ARGS.model)
    initial = model.get_weights()

    # Warm-up: builds and traces the train step (XLA-compiles it with --jit on). Then
    # back to the initial weights and a fresh Adam state: the timed epoch is a true first.
    t0 = time.perf_counter()
    model.fit(x_train[:ARGS.warmup * bs], y_train[:ARGS.warmup * bs], batch_size=bs,
              epochs=1, verbose=0)
    warmup_s = time.perf_counter() - t0
    model.set_weights(initial)
    reset_optimizer(model)

    # Other work on a shared machine makes the wall time noisy; the median batch
    # (from a timing callback, microseconds per batch) is the robust companion figure.
    timer = batch_timer()
    t0 = time.perf_counter()
    hist = model.fit(x_train[:n], y_train[:n], batch_size=bs, epochs=1, shuffle=True,
                     verbose=0, callbacks=[timer])
    fit_s = time.perf_counter() - t0
    return {"samples": n, "batch_size": bs, "steps": -(-n // bs), "fit_s": fit_s,
            "samples_per_s": n / fit_s, "warmup_s": warmup_s,
            "samples_per_s_median_batch": bs / statistics.median(timer.times),
            "batch_s": timer.times,
            "train_loss": float(hist.history["loss"][-1]),
            "train_accuracy": float(hist.history["accuracy"][-1]),
            "test_accuracy": test_accuracy(model, x_test, y_test) if len(x_test) else None,
            "params": model.count_params(), "jit_compile": bool(model.jit_compile)}


def maybe_fit_first(model, x_train, y_train):
    """--fit-steps K trains K batches first, so predict's accuracy means something."""
    if ARGS.fit_steps:
        bs = ARGS.batch_size or 100
        model.fit(x_train[:ARGS.fit_steps * bs], y_train[:ARGS.fit_steps * bs],
                  batch_size=bs, epochs=1, verbose=0)


def task_predict(data):
    """model.predict over the 10,000 test images: Keras's default batch 32, and 1000."""
    (x_train, y_train), (x_test, y_test) = data
    model = build_model(ARGS.model)
    maybe_fit_first(model, x_train, y_train)
    out = {"images": len(x_test), "repeats": ARGS.repeats}
    for bs, key in ((32, "images_per_s"), (1000, "images_per_s_b1000")):
        model.predict(x_test, batch_size=bs, verbose=0)  # warm-up: traces full + last batch
        times = []
        for _ in range(ARGS.repeats):
            t0 = time.perf_counter()
            probs = model.predict(x_test, batch_size=bs, verbose=0)
            times.append(time.perf_counter() - t0)
        out[key] = len(x_test) / statistics.median(times)
        out[key.replace("images_per_s", "predict_s")] = times
    out["test_accuracy"] = float((probs.argmax(1) == y_test).mean())
    out["trained_steps"] = ARGS.fit_steps
    return out


def median_ms(fn, calls, warm):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def task_latency(data):
    """One image, warm: model(x, training=False) (eager call) and model.predict(x)."""
    (x_train, y_train), (x_test, _) = data
    model = build_model(ARGS.model)
    maybe_fit_first(model, x_train, y_train)
    x1 = x_test[:1]  # (1, 28, 28, 1): a single sample still needs its batch axis
    # np.asarray forces the result, as a user reading the probabilities would.
    call = lambda: np.asarray(model(x1, training=False))
    graph_call = tf.function(lambda x: model(x, training=False))  # not seed usage; for reference
    x1_tensor = tf.constant(x1)
    return {"latency_ms": median_ms(call, 200, 20),
            "latency_predict_ms": median_ms(lambda: model.predict(x1, verbose=0), 50, 5),
            "latency_tf_function_ms": median_ms(lambda: np.asarray(graph_call(x1_tensor)), 200, 20),
            "calls": {"latency_ms": 200, "latency_predict_ms": 50, "latency_tf_function_ms": 200}}


def task_recipe002(data):
    """Seed 002's whole recipe: stratified 80/20 split, Adam, sparse CE, batch 32 (Keras's
    default, as the seed), up to 20 epochs, ModelCheckpoint(save_best_only) and
    EarlyStopping(patience=2, restore_best_weights=True); test accuracy at the end.
    --steps N caps each split at N batches (a quick check, not the recipe)."""
    (x_all, y_all), (x_test, y_test) = data
    bs = ARGS.batch_size or 32
    tr, va = stratified_split(y_all, 0.2, seed=42)
    if ARGS.steps is not None:
        tr, va = tr[:ARGS.steps * bs], va[:ARGS.steps * bs]
    model = build_model("seed002-fashion")
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = [keras.callbacks.ModelCheckpoint(os.path.join(tmp, "best-cnn-model.keras"),
                                                     save_best_only=True),
                     keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)]
        t0 = time.perf_counter()
        hist = model.fit(x_all[tr], y_all[tr], batch_size=bs, epochs=ARGS.epochs, verbose=0,
                         validation_data=(x_all[va], y_all[va]), callbacks=callbacks)
        fit_s = time.perf_counter() - t0
    val_loss = hist.history["val_loss"]
    return {"train_samples": len(tr), "val_samples": len(va), "batch_size": bs,
            "epochs_run": len(val_loss), "best_epoch": int(np.argmin(val_loss)) + 1,
            "val_accuracy": float(hist.history["val_accuracy"][int(np.argmin(val_loss))]),
            "fit_s": fit_s, "test_accuracy": test_accuracy(model, x_test, y_test),
            "history": {k: [round(float(v), 5) for v in vs] for k, vs in hist.history.items()}}


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="seed003-cnn",
                   help="seed model (recipe002 always uses seed002-fashion); default seed003-cnn")
    p.add_argument("--task", choices=TASKS, default="train", help="default train")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                   help="folder with the 4 Fashion-MNIST IDX .gz files; default %(default)s")
    p.add_argument("--batch-size", type=int, default=None,
                   help="training batch; default 100 (recipe002: 32, as seed 002)")
    p.add_argument("--steps", type=int, default=None,
                   help="train: time only N batches instead of a full epoch (quick mode)")
    p.add_argument("--warmup", type=int, default=5, help="train: warm-up batches; default 5")
    p.add_argument("--repeats", type=int, default=3, help="predict: timed runs (median); default 3")
    p.add_argument("--fit-steps", type=int, default=0,
                   help="predict/latency: train N batches first (accuracy); default 0")
    p.add_argument("--epochs", type=int, default=20, help="recipe002: max epochs; default 20")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="TF intra- and inter-op threads; default: usable CPUs (%(default)s)")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="compile(jit_compile=...): auto is Keras's default (no XLA on CPU-only)")
    p.add_argument("--seed", type=int, default=0, help="keras.utils.set_random_seed; default 0")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    for name in ("batch_size", "steps", "threads", "repeats", "epochs"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.model == "resnet-small" and args.task != "train":
        p.error(f"--model resnet-small (synthetic images) is for --task train only, "
                f"got --task {args.task}")
    missing = [f for f in IDX_FILES if not (Path(args.data_dir) / f).is_file()]
    if missing and args.model != "resnet-small":  # checked before TensorFlow's slow import
        p.error(f"--data-dir {args.data_dir} lacks {missing[0]}; it must hold: {', '.join(IDX_FILES)}")
    return args


def main(argv=None):
    global ARGS, tf, keras
    ARGS = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ banner off stderr
    t0 = time.perf_counter()
    import tensorflow as tf
    import keras
    import_s = time.perf_counter() - t0
    # Thread pools must be set before TF runs its first op.
    tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(ARGS.threads)
    keras.utils.set_random_seed(ARGS.seed)
    load1 = os.getloadavg()[0]

    t0 = time.perf_counter()
    if ARGS.model == "resnet-small":  # random pixels, scaled as Keras users scale; no test set
        bs = ARGS.batch_size or 100
        x, y = synthetic_images((ARGS.warmup + (ARGS.steps or 10)) * bs, ARGS.seed)
        data = ((x.astype(np.float32) / 255, y), (x[:0].astype(np.float32), y[:0]))
    else:
        data = load_fashion_mnist(ARGS.data_dir)
    load_s = time.perf_counter() - t0
    result = {"task": ARGS.task, "model": "seed002-fashion" if ARGS.task == "recipe002" else ARGS.model,
              "tf_version": tf.__version__, "keras_version": keras.__version__,
              "threads": ARGS.threads, "jit": ARGS.jit,
              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default(on)"),
              "tf_import_s": import_s, "data_load_s": load_s, "loadavg_1min_start": load1}
    result.update(globals()[f"task_{ARGS.task}"](data))
    result["wall_s"] = process_wall_s()
    result["loadavg_1min_end"] = os.getloadavg()[0]
    if ARGS.json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            if k != "history":
                print(f"{k}: {round(v, 4) if isinstance(v, float) else v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
