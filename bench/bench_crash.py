"""Crash safety, measured: kill `cnnkit train` with SIGKILL, bring the run back, compare.

    .venv/bin/python bench/bench_crash.py [--trials 50] [--seed 0] [--seeds 2] [--epochs 3]

Each trial starts `cnnkit train --model seed003-cnn --dataset digits --epochs 3 --batch-size 64
--val-split 0.2 --seed S --quiet --out DIR` (every kind of run file: config.json, history.csv,
state/, best/, last/, metrics.json, the three plots, report.md, report.html) and SIGKILLs it:
  timed    at a moment drawn uniformly over the reference run's wall time;
  aimed    on one of the run's writes. A hook (HOOK below: a `python -c` wrapper, cnnkit itself
           unchanged) makes `cnnkit.fsutil` print a marker line, flushed, when a temporary is
           created, just before and just after each rename; at the marker it was asked for the
           child stops, and the parent kills it there. Targets rotate over best/, history.csv,
           state/, metrics.json, the report files (report.md/html, plots), last/, config.json.
The directory is then brought back by the same command (restart) or by `--resume DIR`,
alternately; when the first is refused, the other is tried. Result against the uninterrupted
reference run of the same seed (computed once per seed), compared on history.csv without its
time column, metrics.json's test_accuracy / test_loss / best_epoch, and the tensors of
best/ and last/, with every run file present:
  resumed-identical / restarted-identical   finished (by that command) and identical
  stuck                                      neither command finishes (exit != 0, or hangs)
  corrupt                                    finishes, but differs from the reference
A refusal that the CLI promises (the same command on a run that has completed an epoch: "use
--resume"; --resume on a directory with no config.json) is counted apart from one it does not.
Leftover temporaries (any dot-entry but `.lock`: `.*.tmp`, `.*.old`, `.curves.*.png`, ...) in
the finished directories are listed. Children run with OMP_NUM_THREADS=1 (2 shared cores here).
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, warn_if_loaded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # where cnnkit is imported from (--code)
PYTHON = sys.executable
MARK = "@@crash"

# Runs as `python -c HOOK train ...`: cnnkit's own CLI, with fsutil's renames and temporaries
# reported. Patched through fsutil's module globals (`os`, `_create_temp`), which its writers
# look up at call time, so the `from cnnkit.fsutil import ...` elsewhere makes no difference.
# Only paths inside CRASH_DIR count, so the data cache never shifts the numbering.
HOOK = r'''
import os, sys, time
from pathlib import Path
import cnnkit.fsutil as fsutil

_dir = os.path.realpath(os.environ["CRASH_DIR"])
_stop_at = int(os.environ.get("CRASH_STOP_AT", "-1"))
_count = 0

def _mark(event, path):
    global _count
    p = os.path.realpath(path)
    if p != _dir and not p.startswith(_dir + os.sep):
        return
    k, _count = _count, _count + 1
    sys.stderr.write(f"@@crash {k} {event} {os.path.relpath(p, _dir)}\n")
    sys.stderr.flush()
    if k == _stop_at:  # hold still right here until the parent's SIGKILL arrives
        while True:
            time.sleep(60)

class _Os:
    def __getattr__(self, name):
        return getattr(os, name)
    @staticmethod
    def replace(src, dst):
        _mark("pre-replace", dst)
        os.replace(src, dst)
        _mark("post-replace", dst)

_create_temp = fsutil._create_temp
def _create_temp_marked(parent, prefix, suffix, create):
    made = _create_temp(parent, prefix, suffix, create)
    _mark("temp", Path(parent) / (prefix[1:-1] + ("" if suffix == ".tmp" else suffix)))
    return made

fsutil.os, fsutil._create_temp = _Os(), _create_temp_marked
from cnnkit.cli import main
sys.exit(main())
'''

TARGETS = ("best", "history.csv", "state", "metrics.json", "report", "last", "config.json")
REPORT_FILES = ("report.md", "report.html", "curves.png", "confusion_matrix.png", "mistakes.png")
RUN_FILES = ("config.json", "history.csv", "metrics.json", *REPORT_FILES,
             "state/state.json", "best/weights.safetensors", "last/weights.safetensors")


def target_of(name: str) -> str:
    """The run file a marker's path belongs to: `.best.old` and `best` are both best/."""
    base = name.lstrip(".").removesuffix(".old")
    return "report" if base in REPORT_FILES else base


@dataclass
class Marker:
    index: int
    event: str  # temp | pre-replace | post-replace
    name: str   # path inside the run directory
    t: float    # seconds after the start, in the reference run


@dataclass
class Reference:
    seed: int
    out: Path
    wall: float
    markers: list[Marker]


@dataclass
class Trial:
    n: int
    seed: int
    kind: str  # timed | aimed
    at: float | Marker  # timed: the fraction of a run's wall time; aimed: the marker
    first: str  # restart | resume
    result: str = ""
    t_kill: float | None = None  # timed: seconds after the start
    notes: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def env(out: Path, stop_at: int | None = None) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CRASH_DIR=str(out),
             PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if stop_at is not None:
        e["CRASH_STOP_AT"] = str(stop_at)
    return e


def train_args(out: Path, seed: int, epochs: int) -> list[str]:
    return ["train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", str(epochs),
            "--batch-size", "64", "--val-split", "0.2", "--seed", str(seed), "--quiet",
            "--out", str(out)]


def run_hooked(args: list[str], out: Path, stop_at: int | None = None):
    """Run `cnnkit` under HOOK. Returns (markers seen, wall s, killed at the stop marker)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-c", HOOK, *args], cwd=ROOT, env=env(out, stop_at),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    markers, other, killed = [], [], False
    for line in proc.stderr:
        if not line.startswith(MARK):
            other.append(line)
            continue
        _, k, event, name = line.split(maxsplit=3)
        markers.append(Marker(int(k), event, name.strip(), time.perf_counter() - t0))
        if stop_at is not None and int(k) == stop_at:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
    proc.wait()
    proc.stderr.close()
    if not killed and stop_at is None and proc.returncode != 0:
        raise SystemExit(f"reference run failed ({proc.returncode}): {''.join(other)[-800:]}")
    return markers, time.perf_counter() - t0, killed


def run_timed(args: list[str], out: Path, at: float) -> bool:
    """Start plain `python -m cnnkit`, SIGKILL it `at` s later. True if it was still running."""
    proc = subprocess.Popen([PYTHON, "-m", "cnnkit", *args], cwd=ROOT, env=env(out),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=at)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def run_plain(args: list[str], out: Path, timeout: float = 600) -> tuple[int, str, float]:
    """(exit status, last line of stderr, wall s) of plain `python -m cnnkit`."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([PYTHON, "-m", "cnnkit", *args], cwd=ROOT, env=env(out),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"hung for {timeout:.0f} s", time.perf_counter() - t0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    return p.returncode, (lines[-1] if lines else ""), time.perf_counter() - t0


# -- comparing with the reference -------------------------------------------------------------
def history_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(f)]


def differences(ref: Path, out: Path) -> list[str]:
    from safetensors.torch import load_file
    import torch

    missing = [f for f in RUN_FILES if not (out / f).is_file()]
    if missing:
        return [f"missing {', '.join(missing)}"]
    diffs = []
    if history_rows(ref / "history.csv") != history_rows(out / "history.csv"):
        diffs.append("history.csv")
    m_ref, m_out = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    diffs += [f"metrics.{k}" for k in ("test_accuracy", "test_loss", "best_epoch")
              if m_ref[k] != m_out[k]]
    for model in ("best", "last"):
        a, b = (load_file(str(d / model / "weights.safetensors")) for d in (ref, out))
        if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
            diffs.append(f"{model}/weights")
    return diffs


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*") if p.name != ".lock")


def started(out: Path) -> bool:
    return any((out / d / "state.json").is_file() for d in ("state", ".state.old"))


def promised_refusal(how: str, out: Path, message: str) -> bool:
    """A refusal the CLI documents: the same command on a run that has completed an epoch, or
    --resume where there is no run to read (no config.json)."""
    if how == "restart":
        return started(out) and "already holds a run" in message
    return not (out / "config.json").is_file() and "not a run directory" in message


# -- the trials -------------------------------------------------------------------------------
def reference(root: Path, seed: int, epochs: int) -> Reference:
    out = root / f"ref-{seed}"
    markers, wall, _ = run_hooked(train_args(out, seed, epochs), out)
    return Reference(seed, out, wall, markers)


def plan(trials: int, refs: list[Reference], rng: random.Random) -> list[Trial]:
    """Half the trials timed over the whole run, half aimed at the writes, targets rotating."""
    plans = []
    for n in range(trials):
        ref = refs[(n // 2) % len(refs)]
        first = "restart" if n % 2 == 0 else "resume"
        if n % 2 == (n // 2) % 2:  # timed and aimed trials each alternate restart / resume
            plans.append(Trial(n, ref.seed, "timed", rng.random(), first))
            continue
        target = TARGETS[(n // 2) % len(TARGETS)]
        pool = [m for m in ref.markers if target_of(m.name) == target]
        plans.append(Trial(n, ref.seed, "aimed", rng.choice(pool), first))
    return plans


def bring_back(trial: Trial, out: Path, epochs: int) -> tuple[str | None, float]:
    """Restart or resume, the other if the first is refused: (the command that finished or
    None, its wall s)."""
    again = {"restart": train_args(out, trial.seed, epochs),
             "resume": ["train", "--resume", str(out), "--quiet"]}
    for how in (trial.first, "resume" if trial.first == "restart" else "restart"):
        rc, message, wall = run_plain(again[how], out)
        if rc == 0:
            return how, wall
        kind = "promised" if promised_refusal(how, out, message) else "UNPROMISED"
        trial.notes.append(f"{how} refused ({kind}, rc {rc}): {message[:150]}")
    return None, 0.0


def do_trial(trial: Trial, root: Path, refs: dict[int, Reference], epochs: int,
             run_wall: float) -> float:
    """Kill, bring back, compare. `run_wall`: the latest wall time of a whole run (the load
    on a shared machine moves it), which timed kills are drawn over. Returns the new one."""
    out = root / f"t{trial.n:03d}"
    args = train_args(out, trial.seed, epochs)
    if trial.kind == "timed":
        trial.t_kill = trial.at * run_wall
        if not run_timed(args, out, trial.t_kill):
            trial.notes.append("finished before the kill")
    else:
        _, _, killed = run_hooked(args, out, stop_at=trial.at.index)
        if not killed:
            trial.notes.append("marker never came: the write sequence differs from the reference")
    how, wall = bring_back(trial, out, epochs)
    if how is None:
        trial.result = "stuck"
        return run_wall
    diffs = differences(refs[trial.seed].out, out)
    trial.result = "corrupt" if diffs else {"restart": "restarted-identical",
                                            "resume": "resumed-identical"}[how]
    if diffs:
        trial.notes.append(f"differs: {', '.join(diffs)}")
    trial.leftovers = leftovers(out)
    return wall if how == "restart" else run_wall  # a restart is a whole run


def describe(trial: Trial) -> str:
    if trial.kind == "timed":
        return f"timed {trial.t_kill:5.2f} s ({trial.at:.2f} of a run)"
    m = trial.at
    return f"aimed #{m.index} {m.event} {m.name} ({m.t:.2f} s)"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50, help="kills (default 50)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    ap.add_argument("--seeds", type=int, default=2,
                    help="training seeds 1..N, one reference run each (default 2)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    ap.add_argument("--code", metavar="DIR", help="import cnnkit from DIR/cnnkit, e.g. a copy "
                    "frozen while others edit this checkout (default: this checkout)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary "
                    "directory, removed at the end)")
    a = ap.parse_args()
    if a.code:
        global ROOT
        ROOT = Path(a.code).resolve()
    warn_if_loaded()
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="cnnkit-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    try:
        refs = {s: reference(root, s, a.epochs) for s in range(1, a.seeds + 1)}
        for r in refs.values():
            counts = collections.Counter(target_of(m.name) for m in r.markers)
            print(f"reference seed {r.seed}: {r.wall:.1f} s, {len(r.markers)} write markers "
                  f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
        trials = plan(a.trials, list(refs.values()), random.Random(a.seed))
        run_wall = min(r.wall for r in refs.values())
        for t in trials:
            run_wall = do_trial(t, root, refs, a.epochs, run_wall)
            print(f"{t.n:3d} seed {t.seed} {describe(t):48s} {t.first:7s} → {t.result}"
                  + "".join(f"\n      {n}" for n in t.notes)
                  + (f"\n      leftovers: {', '.join(t.leftovers)}" if t.leftovers else ""),
                  flush=True)
        summarize(trials, time.perf_counter() - t_start)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


def summarize(trials: list[Trial], wall: float) -> None:
    n = len(trials)
    results = collections.Counter(t.result for t in trials)
    print(f"\n{n} trials ({sum(t.kind == 'timed' for t in trials)} timed, "
          f"{sum(t.kind == 'aimed' for t in trials)} aimed at writes), {wall:.0f} s")
    for r in ("resumed-identical", "restarted-identical", "stuck", "corrupt"):
        print(f"  {r:20s} {results[r]:3d}  {100 * results[r] / n:5.1f}%")
    aimed = collections.Counter(target_of(t.at.name) for t in trials if t.kind == "aimed")
    print("  aimed at: " + ", ".join(f"{k} {aimed[k]}" for k in TARGETS))
    refusals = collections.Counter(note.split(":")[0] for t in trials for note in t.notes
                                   if "refused" in note)
    for what, c in sorted(refusals.items()):
        print(f"  {what}: {c}")
    unpromised = [t for t in trials if any("UNPROMISED" in note for note in t.notes)]
    if unpromised:
        print("  refused where the CLI promises a fresh start or a resume:")
    for t in unpromised:
        print(f"    trial {t.n} ({describe(t)}): {t.notes[0].split(': ', 1)[1]}")
    left = [t for t in trials if t.leftovers]
    kinds = collections.Counter(f".*{Path(p).suffix}" for t in left for p in t.leftovers)
    print(f"  finished directories with leftover temporaries: {len(left)} of "
          f"{sum(t.result.endswith('identical') or t.result == 'corrupt' for t in trials)}"
          + (f" ({', '.join(f'{k} {v}' for k, v in kinds.items())})" if kinds else ""))
    for t in left:
        print(f"    trial {t.n} ({describe(t)}): {', '.join(t.leftovers)}")
    print(machine_line())


if __name__ == "__main__":
    main()
