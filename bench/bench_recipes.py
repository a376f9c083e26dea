"""Time to accuracy: the whole `cnnkit train --recipe R` process (start-up, data loading,
training, test evaluation, report; with --set, a fresh process calling `cnnkit.run`) on the
full Fashion-MNIST, scored on the official 10,000 test images, over several seeds; optionally
beside seed 002's whole Keras recipe. The metrics come from the run's metrics.json (or RunResult).

    .venv/bin/python bench/bench_recipes.py --recipe fast --seeds 1 2 3 [--keras]
    .venv/bin/python bench/bench_recipes.py --recipe best --set epochs=30    # a variant

Prints wall time and test accuracy per seed, then the mean and min accuracy and the median
wall time, and whether the recipe's goal (fast: >= 91.6% in <= 30 s; best: >= 94.0% in
<= 10 min: the mean accuracy over the seeds, every run within the time) is met.

Two times per cnnkit run: the whole process (start to exit, the report included), and the
time to its result: from the start of the process to the moment its "Test accuracy" line
reaches this script (the run prints it before it draws the report's pictures). Keras's
figure (keras_baseline.py's wall_s) is the second kind: its process's age when the test
accuracy is known. The 10x goal compares like with like, time to result on both sides; the
whole-process ratio is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import keras, machine_line, median, warn_if_loaded  # noqa: E402

GOALS = {"fast": (0.916, 30.0), "best": (0.940, 600.0)}
KERAS_GOAL = {"fast": 10.0}  # Keras's wall time / cnnkit's, to at least Keras's accuracy


# One run in a fresh interpreter, so its time includes `import torch` as a user's does.
CHILD = """
import json, sys
import cnnkit
recipe, seed, out, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
result = cnnkit.run(cnnkit.RunSpec.from_recipe(recipe, seed=seed, out=out, verbose=0, **overrides))
print(json.dumps(result.metrics))
"""


def run_recipe(recipe: str, seed: int, out: Path, overrides: dict) -> tuple[float, float, dict]:
    """The user's own command, `cnnkit train --recipe R` (metrics from its metrics.json); with
    --set overrides, which need not have a flag, a `cnnkit.run` call in a fresh interpreter.
    Returns (whole-process wall s, s to the "Test accuracy" line, metrics); with --set, which
    prints no such line, the second is the whole wall time."""
    if overrides:
        command = [sys.executable, "-c", CHILD, recipe, str(seed), str(out), json.dumps(overrides)]
    else:
        command = [sys.executable, "-m", "cnnkit", "train", "--recipe", recipe, "--seed", str(seed),
                   "--out", str(out)]
    t0 = time.perf_counter()
    result, lines = None, []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          bufsize=1) as proc:
        for line in proc.stdout:
            if result is None and line.startswith("Test accuracy "):
                result = time.perf_counter() - t0
            lines.append(line)
        err = proc.stderr.read()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {err.strip()}")
    if overrides:
        return wall, wall, json.loads(lines[-1])
    return wall, result if result is not None else wall, json.loads((out / "metrics.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--keras", action="store_true", help="also run seed 002's Keras recipe (minutes)")
    ap.add_argument("--set", nargs="+", default=[], metavar="OPTION=VALUE",
                    help="run options over the recipe's, e.g. --set epochs=30 (JSON values)")
    args = ap.parse_args()
    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    if overrides:
        print(f"recipe {args.recipe} with {overrides}")
    print(machine_line())
    warn_if_loaded()
    rows, results, k = [], [], None
    # with --keras the cnnkit runs bracket the Keras one (half before, half after), so a host
    # whose speed drifts over minutes weighs on both sides of the ratio alike
    keras_at = len(args.seeds) // 2 if args.keras else None
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(args.seeds):
            if i == keras_at:
                k = run_keras()
            wall, result, m = run_recipe(args.recipe, seed, Path(tmp) / f"seed{seed}", overrides)
            rows.append((seed, wall, m))
            results.append(result)
            print(f"  {args.recipe} seed {seed}: test accuracy {m['test_accuracy']:.4f} in {wall:.1f} s "
                  f"wall, result after {result:.1f} s ({m['epochs_run']} epochs, {m['samples_per_s']:,.0f} samples/s, "
                  f"peak {m['peak_rss_mb']:,.0f} MiB, threads used "
                  f"{m.get('threads', {}).get('used')})")
            used = m.get("threads", {}).get("used") or {}
            if used.get("1", 0) > 0.1 * sum(used.values()) and len(used) > 1:
                for change in m["threads"].get("changes", []):  # why a run stayed on one thread
                    print(f"    threads: epoch {change['epoch'] + 1} step {change['step']}: "
                          f"{change['threads']} ({change['why']})")
    accs = [m["test_accuracy"] for _, _, m in rows]
    walls = [w for _, w, _ in rows]
    print(f"{args.recipe}: accuracy mean {sum(accs) / len(accs):.4f}, min {min(accs):.4f}; "
          f"wall median {median(walls):.1f} s, max {max(walls):.1f} s over {len(rows)} seeds")
    if args.recipe in GOALS:
        acc_goal, time_goal = GOALS[args.recipe]
        met = sum(accs) / len(accs) >= acc_goal and max(walls) <= time_goal
        print(f"goal: mean accuracy ≥ {acc_goal:.1%}, every run ≤ {time_goal:.0f} s wall: "
              f"{'met' if met else 'NOT met'} (every seed ≥ {acc_goal:.1%}: "
              f"{'yes' if min(accs) >= acc_goal else 'no'})")
    print(f"{args.recipe}: time to the test result median {median(results):.1f} s, "
          f"max {max(results):.1f} s")
    if k:
        whole = k["wall_s"] / median(walls)
        ratio = k["wall_s"] / median(results)
        print(f"ratio Keras / cnnkit {args.recipe}, time to the test result: {ratio:.1f}x "
              f"(whole cnnkit process, report included: {whole:.1f}x; median cnnkit runs; "
              f"cnnkit's lowest accuracy {min(accs):.4f} vs Keras's {k['test_accuracy']:.4f})")
        if args.recipe in KERAS_GOAL:
            same = min(accs) >= k["test_accuracy"]
            print(f"goal: ≥ {KERAS_GOAL[args.recipe]:.0f}x faster than Keras to at least its accuracy: "
                  f"{'met' if same and ratio >= KERAS_GOAL[args.recipe] else 'NOT met'}")


def run_keras():
    k = keras(["--task", "recipe002"], timeout=3600)
    if k:
        print(f"  Keras, seed 002's recipe: test accuracy {k['test_accuracy']:.4f} in "
              f"{k['wall_s']:.0f} s ({k['epochs_run']} epochs)")
    return k


if __name__ == "__main__":
    main()
