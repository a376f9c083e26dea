"""Keras 3 on TensorFlow CPU running keras.applications' MobileNetV2 or ResNet50 with a new head,
as a Keras user fine-tunes one: bench_pretrained.py's baseline, one process per network and size.

Runs with bench/.venv-keras/bin/python (bench/setup_keras.sh). In one process, on synthetic
images (keras_baseline.synthetic_images, the same ones the cnnkit side gets): model.fit with the
backbone frozen (base.trainable = False: its batch norms in inference mode too), then unfrozen
(trainable again, recompiled; its batch norms train), then model.predict. Each fit times --steps batches after --warmup ones, batch end to batch end;
predict is timed over --repeats calls after one warm-up call. Keras's defaults: float32, no XLA
on a CPU. --json: one JSON object on stdout (what bench_pretrained.py reads).

    bench/.venv-keras/bin/python bench/keras_applications.py --model mobilenetv2 --size 160
        [--batch-size 16] [--steps 2] [--warmup 1] [--repeats 3] [--threads N] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras_baseline  # noqa: E402
from keras_baseline import synthetic_images  # noqa: E402  (numpy only)

BUILDERS = {"mobilenetv2": "MobileNetV2", "resnet50": "ResNet50"}
CLASSES = 10


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(BUILDERS), required=True)
    p.add_argument("--size", type=int, default=224, help="image height and width; default 224")
    p.add_argument("--batch-size", type=int, default=16, help="default 16")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per fit; default 2")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first; default 1")
    p.add_argument("--repeats", type=int, default=3, help="timed predict calls; default 3")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="TF intra- and inter-op threads; default: usable CPUs (%(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    for name in ("size", "batch_size", "steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    keras_baseline.keras = keras  # its batch_timer's Keras (it imports Keras in its own main)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    b, s = args.batch_size, args.size
    x, y = synthetic_images((args.warmup + args.steps) * b, seed=0, size=s)
    x = x.astype(np.float32) / 255

    base = getattr(keras.applications, BUILDERS[args.model])(
        include_top=False, weights=None, input_shape=(s, s, 3))
    inputs = keras.Input((s, s, 3))
    features = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(features))

    out = {"tf_version": tf.__version__, "keras_version": keras.__version__,
           "threads": args.threads, "load_start": os.getloadavg()[0]}
    for mode, trainable in (("frozen", False), ("unfrozen", True)):
        base.trainable = trainable
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy")  # again: trainable changed
        timer = keras_baseline.batch_timer()  # batch end to batch end
        model.fit(x, y, batch_size=b, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        out[f"{mode}_batch_s"] = timer.times[args.warmup:]
    model.predict(x[:b], batch_size=b, verbose=0)  # warm-up: traces the predict step
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.predict(x[:b], batch_size=b, verbose=0)
        times.append(time.perf_counter() - t0)
    out["infer_s"] = times
    out["infer_images_per_s"] = b / statistics.median(times)
    out["params"] = model.count_params()
    out["load_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
