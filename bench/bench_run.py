"""What the run seam costs: `cnnkit.run(RunSpec)` beside the bare engine doing the same training.

    .venv/bin/python bench/bench_run.py [--rounds 3] [--epochs 3]

Each round trains seed003-cnn on scikit-learn's digits (offline; 1,437 train / 360 test images,
batch 64, 20% validation) four ways, interleaved so host drift hits all alike:
  bare       load_dataset + split + create_model + Trainer.fit + test probabilities: the
             least code a user could write against the engine (no files, no checks);
  none       cnnkit.run(out=None): in memory, nothing written (a search trial, a CV fold);
  metrics    cnnkit.run(artifacts="metrics"): config, history, state and metrics written;
  full       cnnkit.run(artifacts="full"): also best/ and last/, plots and report.md.
Prints the median wall time of each and its ratio to bare, with the machine and its load.
The differences are the seam's fixed cost per run; the ratios shrink as training grows. (bare
scores the last epoch, the runs the best one: their accuracies may differ.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, warn_if_loaded  # noqa: E402


def bare(epochs: int, seed: int) -> float:
    import torch

    from cnnkit.data import load_dataset
    from cnnkit.data.split import stratified_split, train_val_split
    from cnnkit.model.presets import create_model
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    ds = load_dataset("digits")
    keep, held = stratified_split(ds.y_train, (0.8, 0.2), seed=0)
    x, y = ds.x_train[keep], ds.y_train[keep]
    tr, va = train_val_split(y, 0.2, seed=seed)
    torch.manual_seed(seed)
    model = create_model("seed003-cnn", input_shape=ds.image_shape, num_classes=10)
    trainer = Trainer(model, TrainConfig(epochs=epochs, batch_size=64, seed=seed, verbose=0))
    trainer.fit(x[tr], y[tr], x[va], y[va])
    probs = model.net.probabilities(trainer.predict_logits(ds.x_train[held]))
    return float((probs.argmax(1) == ds.y_train[held]).float().mean())


def seam(epochs: int, seed: int, artifacts: str | None, out: Path | None) -> float:
    import cnnkit

    spec = cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=epochs, batch_size=64,
                          val_split=0.2, seed=seed, verbose=0, artifacts=artifacts,
                          out=str(out) if out else None)
    return cnnkit.run(spec).metrics["test_accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    print(machine_line())
    warn_if_loaded()
    times: dict[str, list[float]] = {k: [] for k in ("bare", "none", "metrics", "full")}
    accuracy: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        seam(1, 0, "full", Path(tmp) / "warm-up")  # imports (matplotlib too), first kernels
        for r in range(args.rounds):
            for name in times:
                out = Path(tmp) / f"{name}-{r}" if name in ("metrics", "full") else None
                t0 = time.perf_counter()
                acc = (bare(args.epochs, 1) if name == "bare"
                       else seam(args.epochs, 1, name, out))
                times[name].append(time.perf_counter() - t0)
                accuracy[name] = acc
    base = median(times["bare"])
    for name, ts in times.items():
        print(f"  {name:8s} {median(ts):6.2f} s median of {len(ts)}  ({median(ts) / base:.2f}x bare)"
              f"  test accuracy {accuracy[name]:.4f}")


if __name__ == "__main__":
    main()
