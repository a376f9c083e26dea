"""What a search costs, and what each sampler finds with the same budget.

    .venv/bin/python bench/bench_tune.py [--rounds 5] [--trials 12] [--seeds 3] [--threads 1]
    .venv/bin/python bench/bench_tune.py --skip-samplers     # the overhead part only

1. Overhead. `cnnkit tune` (random sampler, no pruning, the study's journal file, every trial a
   run directory with artifacts=metrics) against plain `cnnkit.run` calls of the very same
   trials (the parameters the study drew, the same seed and artifacts, one after another), on
   scikit-learn's digits, 1 epoch per trial (the worst case: the least training to hide the
   search's cost behind). Rounds alternate which goes first. Printed: median wall time of each,
   the overhead per trial and in percent (goal: under 5%), with and without the study's final
   report (trials.csv, best.yaml, two plots, report.html, written once per study); also for the
   fastest round of each, the least disturbed by other processes on a shared machine; and the
   search's own work timed inside each study (wall time less the trials' cnnkit.run calls and
   the report), which other processes disturb far less than a difference of two timings.
2. Samplers. grid, random and TPE, each with the same budget of N trials, on a 5,000-image
   subset of Fashion-MNIST (2 epochs of fast-cnn, 20% validation), over lr x batch_size (grid:
   4 learning rates x 3 batch sizes = 12 points). Printed side by side: the best validation
   accuracy after N/3, 2N/3 and N trials (random and TPE: the mean over --seeds sampler
   seeds), and the median wall time of a study.

Every figure comes with the CPU model, the torch threads and os.getloadavg(): the machine is
shared, so quote the load with any figure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median, warn_if_loaded  # noqa: E402

DIGITS_SPACE = {"base": {"model": "seed003-cnn", "dataset": "digits", "epochs": 1,
                         "batch_size": 64, "val_split": 0.2, "seed": 1},
                "space": {"lr": {"log_uniform": [3e-4, 1e-2]}, "batch_size": [32, 64, 128]},
                "objective": {"metric": "val_accuracy", "direction": "maximize"}}


def study(out: Path, trials: int, seed: int) -> tuple[float, float, list[dict]]:
    """(wall time of the whole tune call, of its final report, the trials' parameters)."""
    import cnnkit
    from cnnkit.search import report, worker

    write, evaluate = report.write_study, worker.evaluate
    spent = {"report": 0.0, "runs": 0.0}

    def timed(fn, key):
        def call(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0
        return call

    report.write_study, worker.evaluate = timed(write, "report"), timed(evaluate, "runs")
    try:
        t0 = time.perf_counter()
        summary = cnnkit.tune(DIGITS_SPACE, n_trials=trials, sampler="random", pruner="none",
                              seed=seed, out=out, verbose=0)
        wall = time.perf_counter() - t0
    finally:
        report.write_study, worker.evaluate = write, evaluate
    RUNS.append(spent["runs"])
    return wall, spent["report"], [r["params"] for r in summary.trials]


RUNS: list[float] = []  # per study: time inside the trials' cnnkit.run calls


def plain(out: Path, params: list[dict]) -> float:
    """The same trials as plain cnnkit.run calls: wall time of all of them."""
    import cnnkit
    from cnnkit.search.space import load_space

    space = load_space(DIGITS_SPACE)
    t0 = time.perf_counter()
    for i, p in enumerate(params):
        spec = space.apply(p).replace(out=str(out / f"{i:04d}"), artifacts="metrics", verbose=0)
        cnnkit.run(spec)
    return time.perf_counter() - t0


def overhead(rounds: int, trials: int) -> None:
    print(f"\n1. per-trial overhead: {trials} trials of 1 epoch, seed003-cnn on digits "
          "(artifacts=metrics both ways)")
    tune_t, report_t, plain_t = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, _, params = study(tmp / "warm", 2, 0)  # imports, first kernels, data cache
        plain(tmp / "warm-plain", params)
        for r in range(rounds):
            order = ("tune", "plain") if r % 2 == 0 else ("plain", "tune")
            for which in order:
                if which == "tune":
                    wall, rep, params = study(tmp / f"study-{r}", trials, seed=100 + r)
                    tune_t.append(wall)
                    report_t.append(rep)
                else:
                    _, _, ps = _params_of(tmp, r, trials)
                    plain_t.append(plain(tmp / f"plain-{r}", ps))
    search = [w - r for w, r in zip(tune_t, report_t)]  # the trials, without the report
    for label, pick in (("median", median), ("fastest", min)):
        t, p, rep, sr = pick(tune_t), pick(plain_t), pick(report_t), pick(search)
        print(f"   {label} of {rounds}: cnnkit tune {t:.2f} s (its final report {rep:.2f} s), "
              f"plain cnnkit.run {p:.2f} s ({p / trials * 1000:.0f} ms per trial)")
        print(f"     overhead {(t - p) / trials * 1000:+.1f} ms per trial, {100 * (t - p) / p:+.1f}% "
              f"with the report; {(sr - p) / trials * 1000:+.1f} ms per trial, "
              f"{100 * (sr - p) / p:+.1f}% without it (goal < 5%)")
    own = [(w - r - runs) / trials * 1000 for w, r, runs in zip(tune_t, report_t, RUNS[-rounds:])]
    print(f"   the search's own work, measured inside each study (its wall time less its runs "
          f"and report; no noise from comparing two timings): {median(own):.1f} ms per trial "
          f"median ({min(own):.1f}-{max(own):.1f}), {100 * median(own) / (p / trials * 1000):.1f}% "
          f"of a plain run's {p / trials * 1000:.0f} ms")
    print(f"   load average now {os.getloadavg()[0]:.2f}")


_DRAWN: dict[int, list[dict]] = {}


def _params_of(tmp: Path, r: int, trials: int):
    """The parameters study round r draws (drawn once, in memory, so plain can go first)."""
    if r not in _DRAWN:
        import cnnkit

        space = {**DIGITS_SPACE, "base": {**DIGITS_SPACE["base"], "epochs": 1, "limit": 100}}
        s = cnnkit.tune(space, n_trials=trials, sampler="random", pruner="none", seed=100 + r,
                        verbose=0)
        _DRAWN[r] = [t["params"] for t in s.trials]
    return None, None, _DRAWN[r]


def samplers(trials: int, seeds: int) -> None:
    import cnnkit

    base = {"model": "fast-cnn", "dataset": "fashion-mnist", "limit": 5000, "epochs": 2,
            "val_split": 0.2, "seed": 1}
    lrs, sizes = [3e-4, 1e-3, 3e-3, 1e-2], [64, 128, 256]
    spaces = {
        "grid": {"lr": lrs, "batch_size": sizes},
        "random": {"lr": {"log_uniform": [3e-4, 1e-2]}, "batch_size": sizes},
        "tpe": {"lr": {"log_uniform": [3e-4, 1e-2]}, "batch_size": sizes},
    }
    print(f"\n2. samplers, {trials} trials each: fast-cnn, 2 epochs on 5,000 Fashion-MNIST "
          "images (20% validation), objective val_accuracy (higher is better); random and "
          f"TPE: mean over {seeds} sampler seeds (grid: one, it draws nothing)")
    marks = sorted({max(1, trials // 3), max(1, 2 * trials // 3), trials})
    print("   " + "sampler".ljust(8) + "".join(f"best@{m}".rjust(10) for m in marks)
          + "   wall/study  best parameters (last seed)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, space in spaces.items():
            bests, walls = [], []
            for seed in range(1 if name == "grid" else seeds):
                t0 = time.perf_counter()
                s = cnnkit.tune({"base": base, "space": space,
                                 "objective": {"metric": "val_accuracy"}},
                                n_trials=None if name == "grid" else trials, sampler=name,
                                pruner="none", seed=seed, out=Path(tmp) / f"{name}-{seed}",
                                verbose=0)
                walls.append(time.perf_counter() - t0)
                values = [r["value"] for r in sorted(s.trials, key=lambda r: r["number"])]
                bests.append([max(v for v in values[:m] if v is not None) for m in marks])
            mean = [sum(b[i] for b in bests) / len(bests) for i in range(len(marks))]
            print("   " + name.ljust(8) + "".join(f"{b:10.4f}" for b in mean)
                  + f"   {median(walls):6.1f} s    {_short(s.best_params)}", flush=True)
    print(f"   load average now {os.getloadavg()[0]:.2f}")


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3, help="sampler seeds for random and TPE")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a "
                    "shared 2-core machine, more threads spin against other processes)")
    ap.add_argument("--skip-samplers", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(machine_line())
    warn_if_loaded()
    overhead(args.rounds, args.trials)
    if not args.skip_samplers:
        samplers(args.trials, args.seeds)


if __name__ == "__main__":
    main()
