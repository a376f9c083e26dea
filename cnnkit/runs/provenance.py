"""What a run ran on, as config.json records it under "resolved"/"ran_on": the versions of
cnnkit, torch, Python and numpy, the CPU and its vector flags, the OS, the git commit of the
working directory (when it is a repository) and a fingerprint of the decoded data.

    ran_on(ds)  ->  {"cnnkit": "0.1.0", "torch": "2.13.0", ..., "git": {"commit", "dirty"},
                     "data": "crc32:1a2b3c4d"}

Nothing here fails a run: what cannot be read is recorded as None.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

# The CPU flags that decide which kernels run and how fast: SIMD width, bf16 and matrix units.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")
GIT_TIMEOUT_S = 5


def ran_on(ds, cwd=None) -> dict:
    """The record of the software, machine and data a run is about to train with."""
    import numpy
    import torch

    import cnnkit
    from cnnkit.data.mapped import data_crc

    return {"cnnkit": cnnkit.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "numpy": numpy.__version__,
            "os": f"{platform.system()} {platform.release()}", "cpu": cpu(),
            "git": git_commit(cwd), "data": data_crc(ds)}


def cpu() -> dict:
    """{"model", "family", "model_number", "flags", "cores"}: /proc/cpuinfo's model name, its
    family and model numbers (the name alone, "AMD EPYC", does not tell Zen 3 from Zen 5) and
    the VECTOR_FLAGS it has."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {"model": info.get("model name") or platform.processor() or platform.machine(),
            "family": info.get("cpu family"), "model_number": info.get("model"),
            "flags": [f for f in VECTOR_FLAGS if f in flags], "cores": os.cpu_count()}


def git_commit(cwd=None) -> dict | None:
    """{"commit", "dirty"} of the repository holding `cwd` (default: the working directory);
    None outside a repository or without git. Dirty: tracked files changed since the commit."""
    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


