"""Data-parallel training on this machine: samples/s for 1 and 2 processes side by side, each
with its thread settings (cnnkit.train.threads: the CPUs / the processes), and the all-reduce
volume per step of every preset (`--volume`).

    .venv/bin/python bench/bench_ddp.py                 # fashion-mnist (6,000 images) or digits
    .venv/bin/python bench/bench_ddp.py --procs 1 2 4 --limit 12000
    .venv/bin/python bench/bench_ddp.py --volume        # bytes per step per preset, on paper

samples/s is the training epochs' own (metrics.json): the processes' start-up (~2-4 s each, an
interpreter importing torch) is left out, and is the price of --nproc on a small run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FASHION, machine_line, warn_if_loaded  # noqa: E402


def run(procs: int, args, out: Path) -> dict:
    import cnnkit
    from cnnkit import RunSpec

    dataset = "fashion-mnist" if FASHION.is_dir() else "digits"
    spec = RunSpec(model=args.model, dataset=dataset, epochs=args.epochs, batch_size=args.batch,
                   limit=args.limit if dataset != "digits" else None, seed=1, verbose=0,
                   threads=args.threads, out=str(out / f"p{procs}"))
    r = cnnkit.run(spec, nproc=procs)
    threads = json.loads((r.run_dir / "config.json").read_text())["resolved"]["threads"]
    return {"procs": procs, "dataset": dataset, "samples_per_s": r.metrics["samples_per_s"],
            "wall_s": r.metrics["wall_time_s"], "threads": threads["threads"],
            "why": threads["reason"], "loss": r.history["loss"][-1],
            "test_accuracy": r.metrics["test_accuracy"]}


def volume(gbits=(1, 10, 100), procs=(2, 4, 8)) -> None:
    """Per step, DDP all-reduces every gradient: parameters x 4 bytes (fp32). A ring all-reduce
    sends 2(N-1)/N of that from each process; at L Gb/s that takes bytes * 8 / (L * 1e9) s."""
    from cnnkit.model.presets import PRESETS, create_model

    print("| preset | parameters | gradient MB | sent per process per step, N=" +
          ", ".join(map(str, procs)) + " (MB) | " +
          " | ".join(f"ms at {g} Gb/s (N={procs[-1]})" for g in gbits) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(gbits))
    for name in PRESETS:
        model = create_model(name)
        n = sum(p.numel() for p in model.net.parameters())
        mb = n * 4 / 1e6
        sent = [mb * 2 * (k - 1) / k for k in procs]
        ms = [sent[-1] * 8e6 / (g * 1e9) * 1e3 for g in gbits]
        print(f"| {name} | {n:,} | {mb:.2f} | " + " / ".join(f"{s:.2f}" for s in sent) + " | "
              + " | ".join(f"{m:.2f}" for m in ms) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="seed003-cnn")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128, help="the global batch")
    p.add_argument("--limit", type=int, default=6000)
    p.add_argument("--threads", default=None, help="per process (default: cnnkit's plan)")
    p.add_argument("--volume", action="store_true", help="only the all-reduce volume table")
    args = p.parse_args()
    if args.volume:
        volume()
        return 0
    print(machine_line())
    warn_if_loaded()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.procs:
            rows.append(run(n, args, Path(tmp)))
    base = rows[0]["samples_per_s"]
    print(f"\n{args.model} on {rows[0]['dataset']}, global batch {args.batch}, "
          f"{args.epochs} epochs")
    print("| processes | threads each | samples/s | vs first | wall s | last loss | test acc |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['procs']} | {r['threads']} ({r['why']}) | {r['samples_per_s']:,.0f} | "
              f"{r['samples_per_s'] / base:.2f}x | {r['wall_s']:.1f} | {r['loss']:.4f} | "
              f"{r['test_accuracy']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
