"""The thread governor and the malloc setting are a run's (cnnkit.run, the CLI): a predict or a
fit inside a user's notebook or server leaves torch's thread count and glibc's malloc as the
caller had them."""
import json
import subprocess
import sys

import pytest

# Where glibc serves a 30 MiB block from: its own mapping (mmap, glibc's default threshold, which
# only rises after a block that large was freed) or the heap (cnnkit's kept-memory setting,
# cnnkit.train.memory, takes blocks up to 32 MiB from the heap).
WHERE = """
import ctypes, ctypes.util
def served_from():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    p = libc.malloc(30 << 20)
    for line in open("/proc/self/maps"):
        lo, hi = (int(a, 16) for a in line.split()[0].split("-"))
        if lo <= p < hi:
            return "heap" if line.rstrip().endswith("[heap]") else "mmap"
    return "?"
"""

CALLER = WHERE + """
import json, torch
import cnnkit
from cnnkit.model.presets import create_model
from cnnkit.train.config import TrainConfig
from cnnkit.train.trainer import Trainer

torch.set_num_threads(3)  # the caller's choice (more than the plan would ever pick here)
model = create_model("fast-cnn", input_shape=(8, 8, 1), num_classes=10)
images = torch.randint(0, 256, (64, 8, 8, 1), dtype=torch.uint8)
labels = torch.randint(0, 10, (64,))
seen = {}
model.predict(images)
seen["predict"] = torch.get_num_threads()
cnnkit.Predictor(model, runtime="torch").predict(images)
seen["Predictor"] = torch.get_num_threads()
Trainer(model, TrainConfig(epochs=1, batch_size=32, verbose=0)).fit(images, labels)
seen["Trainer.fit"] = torch.get_num_threads()
seen["malloc"] = served_from()
print(json.dumps(seen))
"""

KEPT = WHERE + """
from cnnkit.train.memory import keep_freed_memory
assert keep_freed_memory()
print(served_from())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_predict_and_a_plain_fit_leave_the_callers_threads_and_malloc_alone():
    r = subprocess.run([sys.executable, "-c", CALLER], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == {
        "predict": 3, "Predictor": 3, "Trainer.fit": 3, "malloc": "mmap"}
    # the probe tells the two apart: with cnnkit's setting the same block is the heap's
    r = subprocess.run([sys.executable, "-c", KEPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["heap"]


def test_a_predictor_asked_for_threads_uses_them():
    code = ("import torch, cnnkit; from cnnkit.model.presets import create_model; "
            "p = cnnkit.Predictor(create_model('fast-cnn'), runtime='torch', threads=1); "
            "print(torch.get_num_threads(), p.threads)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"]
