"""Freed memory is kept (cnnkit.train.memory): a training step reuses the pages the step before
it freed instead of faulting fresh ones in from the kernel."""
import json
import os
import subprocess
import sys

import pytest

FIT = """
import json, resource, torch
from cnnkit.model.presets import create_model
from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.trainer import Trainer
from cnnkit.train.memory import keep_freed_memory

class Faults(Callback):  # minor page faults over steps 11-40, once the heap has grown (and
    # before the epoch's end: a short run's batch-norm recomputation there allocates large
    # blocks, which raise glibc's own thresholds and would hide what its defaults do per step)
    def on_batch_end(self, batch, logs=None):
        now = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if batch == 9:
            self.start = now
        elif batch == 39:
            self.count = now - self.start

torch.manual_seed(0)
x = torch.randint(0, 256, (128 * 40, 28, 28, 1), dtype=torch.uint8)
y = torch.randint(0, 10, (len(x),))
faults = Faults()
Trainer(create_model("fast-cnn-dense"), TrainConfig(epochs=1, batch_size=128, seed=0, verbose=0,
        threads=2), callbacks=[faults], governed=True).fit(x, y)  # as cnnkit.run makes it
print(json.dumps({"kept": keep_freed_memory(), "faults_per_step": faults.count / 30}))
"""


def _fit(**env):
    out = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_training_steps_reuse_freed_memory_instead_of_faulting_pages_in():
    kept = _fit()
    assert kept["kept"], "glibc's malloc thresholds were not set"
    # a step of the second epoch touches pages the steps before it already had (0-15 faults a
    # step measured, from allocations outside the network's tensors)
    assert kept["faults_per_step"] < 60, kept
    # glibc's defaults give the activations' pages back and fault them in again, hundreds a step
    # at this batch in most processes (with torch's ops 800-1,400 in 7 of 9; with cnnkit's
    # kernels, which allocate less, 84-452, the largest of four 334-452 in three tries): the
    # same fit faults far more without cnnkit's setting
    default = [_fit(CNNKIT_MALLOC="default") for _ in range(5)]
    assert not any(d["kept"] for d in default)
    worst = max(d["faults_per_step"] for d in default)
    assert worst > 150 and worst > 10 * kept["faults_per_step"], (kept, default)


def test_a_bad_cnnkit_malloc_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "cnnkit", "train", "--model", "fast-cnn-dense",
                        "--dataset", "digits", "--epochs", "1", "--out", str(out)],
                       capture_output=True, text=True, env={**os.environ, "CNNKIT_MALLOC": "off"},
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "cnnkit: error: CNNKIT_MALLOC must be one of keep, default; got 'off'"]
    assert not (out / "config.json").exists()  # nothing written: the same command starts again


def test_a_run_records_its_malloc_setting(tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "cnnkit", "train", "--model", "fast-cnn-dense",
                    "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(out)],
                   check=True, timeout=300)
    assert json.loads((out / "config.json").read_text())["resolved"]["malloc"] == "keep"
