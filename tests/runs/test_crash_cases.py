"""Runs killed (SIGKILL) at one exact write, then brought back: the cases bench/bench_crash.py
found. A hook stands in for `kill -9` at a chosen moment: it patches `cnnkit.fsutil` (in the
child only; cnnkit itself is unchanged) so the child kills itself when the n-th temporary of a
file is created, or just before / after its n-th rename. Deterministic: no timing involved."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import cnnkit
from cnnkit import RunSpec

ROOT = Path(__file__).resolve().parents[2]
BASE = dict(model="seed003-cnn", dataset="digits", batch_size=64, val_split=0.2, seed=1,
            verbose=0)

# `python -c HOOK train ...` with KILL_AT="EVENT:NAME:N": SIGKILL at the N-th EVENT on NAME,
# EVENT one of temp (temporary created, nothing written yet), before-rename, after-rename.
HOOK = r'''
import os, signal, sys
import cnnkit.fsutil as fsutil

event, name, nth = os.environ["KILL_AT"].split(":")
seen = 0

def hit(e, path):
    global seen
    if e == event and os.path.basename(path) == name:
        seen += 1
        if seen == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

class Os:
    def __getattr__(self, attr):
        return getattr(os, attr)
    @staticmethod
    def replace(src, dst):
        hit("before-rename", dst)
        os.replace(src, dst)
        hit("after-rename", dst)

create_temp = fsutil._create_temp
def create_temp_hooked(parent, prefix, suffix, make):
    made = create_temp(parent, prefix, suffix, make)
    hit("temp", prefix[1:-1] + ("" if suffix == ".tmp" else suffix))
    return made

fsutil.os, fsutil._create_temp = Os(), create_temp_hooked
from cnnkit.cli import main
sys.exit(main())
'''


def kill_at(out: Path, at: str, epochs: int) -> None:
    args = ["train", "--model", BASE["model"], "--dataset", BASE["dataset"], "--epochs",
            str(epochs), "--batch-size", str(BASE["batch_size"]), "--val-split",
            str(BASE["val_split"]), "--seed", str(BASE["seed"]), "--quiet", "--out", str(out)]
    env = dict(os.environ, KILL_AT=at, OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", HOOK, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, f"not killed at {at}: rc {p.returncode}\n{p.stderr}"


def temporaries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".lock")


@pytest.mark.slow
def test_same_command_starts_afresh_a_run_killed_between_its_first_best_and_state(tmp_path):
    # Epoch 1 ends with ModelCheckpoint writing best/, then the trainer writing state/. Killed
    # between the two, the run has completed no epoch (no state/), so the same command must
    # start it afresh (as --resume does); it refused: "exists and is not empty".
    out = tmp_path / "run"
    kill_at(out, "after-rename:best:1", epochs=2)
    assert (out / "best").is_dir() and not (out / "state").exists()
    result = cnnkit.run(RunSpec(**BASE, epochs=2, out=str(out)))
    assert result.metrics["epochs_run"] == 2 and len(result.history["loss"]) == 2
    assert (out / "state" / "state.json").is_file() and (out / "report.html").is_file()


# A kill mid-write leaves its temporary, and one between a directory's last rename and the
# removal of the replaced copy leaves `.NAME.old`; the resumed run finishes but keeps them.
@pytest.mark.slow
@pytest.mark.parametrize("at, epochs, left", [
    ("temp:history.csv:2", 2, ".history.csv.*.tmp"),   # mid-write of epoch 2's history
    ("temp:state:2", 2, ".state.*.tmp (a directory)"),  # mid-write of epoch 2's state/
    ("after-rename:state:2", 2, ".state.old (a whole state)"),  # the last epoch's state/
    ("temp:curves.png:1", 1, ".curves.*.png"),          # atomic_path's name has no .tmp
])
def test_resumed_run_leaves_no_temporaries(tmp_path, at, epochs, left):
    out = tmp_path / "run"
    kill_at(out, at, epochs=epochs)
    assert temporaries(out), f"the kill at {at} should leave {left} behind"
    cnnkit.resume(out)
    assert (out / "report.html").is_file()
    assert temporaries(out) == [], f"{left} survives the resumed run"
