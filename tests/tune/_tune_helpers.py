"""The search tests' own helpers (imported as `_tune_helpers`: `from conftest import` finds
whichever tests/ directory's conftest was imported first): a tiny search space on sklearn's
digits, and a real `cnnkit tune` child process that can be paused mid-trial."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


TINY = {"input_shape": [8, 8, 1], "layers": [
    {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
    {"Dense": {"units": 10, "activation": "softmax"}}]}
BASE = {"model": TINY, "dataset": "digits", "epochs": 2, "batch_size": 64}


def write_space(path: Path, space: dict, base: dict | None = None, **objective) -> Path:
    doc = {"base": {**BASE, **(base or {})}, "space": space,
           "objective": objective or {"metric": "val_accuracy", "direction": "maximize"}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # the space's order is the draws'
    return path


def pause_in_trial(trial_dir_suffix: str, epoch: int) -> str:
    """A `python -c` script: `cnnkit` (its argv), but once the trial whose run directory ends
    in `trial_dir_suffix` has saved epoch `epoch`'s state, it prints "paused" and holds still
    (its heartbeat thread still beating) until the test kills it."""
    return f"""
import sys, threading
from cnnkit.cli import main
from cnnkit.train.trainer import Trainer

save_state = Trainer.save_state
def save_then_pause(self, directory):
    path = save_state(self, directory)
    if str(directory).endswith({trial_dir_suffix + '/state'!r}) and self.epoch == {epoch}:
        print("paused", flush=True)
        threading.Event().wait()
    return path
Trainer.save_state = save_then_pause
sys.exit(main(sys.argv[1:]))
"""


def cnnkit_child(*argv, script: str | None = None) -> subprocess.Popen:
    code = script or "import sys; from cnnkit.cli import main; sys.exit(main(sys.argv[1:]))"
    # one torch thread per child: a tiny model's spinning OpenMP workers on 2 shared cores
    # make it ~30x slower
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
