"""A generated image folder larger than a memory limit, and a child process that trains on it
under that limit (tests/data/test_larger_than_memory.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SIDE = 512  # 512x512 RGB: 786,432 decoded bytes per image: few files, many bytes

MODEL_YAML = f"""input_shape: [{SIDE}, {SIDE}, 3]
layers:
  - AveragePooling2D: {{pool_size: 16}}
  - Conv2D: {{filters: 8, kernel_size: 3, activation: relu}}
  - MaxPooling2D: {{pool_size: 2}}
  - Flatten: {{}}
  - Dense: {{units: 2, activation: softmax}}
"""


def make_folder(root: Path, images: int) -> int:
    """`images` PNGs in root/{top,bottom}/: a bright band in the top or the bottom half, its
    brightness and a stripe varying per image. Flat images compress to almost nothing, so
    the folder is quick to write while its decoded size is what the test needs. Returns the
    decoded size in bytes."""
    from PIL import Image

    for k, name in enumerate(("top", "bottom")):
        (root / name).mkdir(parents=True)
        for i in range(k, images, 2):
            img = np.full((SIDE, SIDE, 3), 20 + i % 40, np.uint8)
            band = slice(SIDE // 8, SIDE * 3 // 8) if name == "top" else slice(SIDE * 5 // 8, SIDE * 7 // 8)
            img[band] = 150 + i % 60
            img[:, (i * 7) % SIDE] = 255
            Image.fromarray(img).save(root / name / f"{i:05d}.png", compress_level=1)
    return images * SIDE * SIDE * 3


CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))  # before torch is imported
import threading, time
peak_anon = 0  # the process's own memory (heap, stacks): what the limit bounds
def watch():
    global peak_anon
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon = max(peak_anon, int(line.split()[1]) * 1024)
        time.sleep(0.01)
threading.Thread(target=watch, daemon=True).start()
import cnnkit
result = cnnkit.run(cnnkit.RunSpec(model=sys.argv[2], dataset="folder:" + sys.argv[3],
                                   epochs=1, batch_size=8, val_split=0.1, seed=0, verbose=0,
                                   out=sys.argv[4]))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"peak_rss": int(status["VmHWM"].split()[0]) * 1024, "peak_anon": peak_anon,
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "test_accuracy": result.metrics["test_accuracy"],
                  "history": result.history}))
"""


def train_in_child(limit: int, model: Path, folder: Path, out: Path, cache: Path,
                   timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Train once in a fresh interpreter whose data segment is capped at `limit` bytes."""
    env = dict(os.environ, CNNKIT_DATA=str(cache), CNNKIT_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(limit), str(model), str(folder),
                           str(out)], capture_output=True, text=True, env=env, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    return proc, (json.loads(lines[-1]) if proc.returncode == 0 and lines else None)
