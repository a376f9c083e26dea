"""Freed memory kept for the next step, instead of given back to the kernel and faulted in again.

A training step frees and reallocates the same few MB of activations and gradients every step.
glibc's malloc, by default, serves blocks over its (adaptive) mmap threshold with mmap/munmap
and gives the top of its heap back to the kernel whenever more than its trim threshold is free;
either way the next step touches fresh pages, and each one costs a page fault and a page of
zeroes written by the kernel: hundreds of faults a step in some fits, and those fits markedly
slower (bench/README.md, "fourth session"). `keep_freed_memory` fixes both thresholds once per
process (glibc only, via `mallopt`): blocks up to 32 MiB (glibc's largest mmap threshold) come
from the heap, and the heap keeps up to 1 GiB of freed memory. A run's peak memory stays what its
tensors need; memory it no longer uses is kept for reuse rather than returned, which a training
process wants.

It changes the whole process, so only a run cnnkit starts sets it (cnnkit.run, the CLI: `Trainer`
with `governed=True`); a `predict` or a `fit` inside a user's notebook or server leaves the
caller's malloc alone.

`CNNKIT_MALLOC=default` leaves glibc's defaults alone (to measure the difference); `keep`, or no
value, is the setting above.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from cnnkit.errors import CnnkitError

MODES = ("keep", "default")  # CNNKIT_MALLOC
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> parameter numbers
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the largest it takes
TRIM_THRESHOLD = 1 << 30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds (once per process); True when they are in force."""
    global _done
    if _done is None:
        _done = _set_thresholds()
    return _done


def _set_thresholds() -> bool:
    mode = os.environ.get("CNNKIT_MALLOC") or "keep"
    if mode not in MODES:
        raise CnnkitError(f"CNNKIT_MALLOC must be one of {', '.join(MODES)}; got {mode!r}")
    if not sys.platform.startswith("linux") or mode == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent from musl and other C libraries
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; both or neither, so a run is one configuration or the other
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                          TRIM_THRESHOLD))
