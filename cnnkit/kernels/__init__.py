"""cnnkit's own CPU kernels, compiled on this machine and loaded with ctypes.

`stem.cpp`: a small first convolution and the 2x2 max-pool after it in one pass
(cnnkit.kernels.stem says when it runs); `pool.cpp`: a 2x2 max-pool with one-byte indices
(cnnkit.kernels.pool); `bnrelu.cpp`: batch norm and ReLU in training (cnnkit.kernels.bnrelu).
They are plain C++ with OpenMP and no torch headers, so they compile into one library in a few
seconds with the system's C++ compiler (`CXX`, else `c++`/`g++`), once per source and CPU:
`-march=native` code is kept in the cache folder (`$CNNKIT_CACHE`, else
`$XDG_CACHE_HOME/cnnkit`, else `~/.cache/cnnkit`) under a name that hashes both.

When they are compiled: by `build()`, which `make setup` runs (`python -m cnnkit.kernels`), and
at the start of a run cnnkit starts (`prepare`, from cnnkit.run, saying so), never inside a
forward pass: a notebook's first `predict` or a server's first request must not start a
compiler, so `loaded()` only loads a library that is already there, and until then the network
runs torch's ops. Which kernels a run's layers use is in its config.json (`resolved.kernels`,
`resolved.kernel_layers`).

The library links libgomp by its soname, which torch's own libgomp already holds in the process,
so both share one OpenMP thread pool (`loaded()` refuses a library that brought in a second one).

`CNNKIT_KERNELS=torch` turns cnnkit's kernels off (to compare); `auto`, or no value, uses them
where they apply. Anything else is an error.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from cnnkit.errors import CnnkitError

MODES = ("auto", "torch")  # CNNKIT_KERNELS
ABI = 2  # cnnkit_kernels_abi() of the sources in this folder
SOURCES = tuple(sorted(Path(__file__).parent.glob("*.cpp")))  # compiled into one library
HEADERS = tuple(sorted(Path(__file__).parent.glob("*.h")))
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
COMPILE_TIMEOUT_S = 300
NOT_BUILT = ("not compiled for this CPU yet: `python -m cnnkit.kernels` or `make setup` "
             "compiles them, and so does the start of a run (cnnkit.run, `cnnkit train`)")

_lib: ctypes.CDLL | None = None
_why_not: str | None = None  # why the kernels are not in use, once looked at
_off = 0  # inside `disabled()`


def mode() -> str:
    value = os.environ.get("CNNKIT_KERNELS") or "auto"
    if value not in MODES:
        raise CnnkitError(f"CNNKIT_KERNELS must be one of {', '.join(MODES)}; got {value!r}")
    return value


def cache_dir() -> Path:
    if os.environ.get("CNNKIT_CACHE"):
        return Path(os.environ["CNNKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnkit"


def compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_identity() -> str:
    """What -march=native compiles for: the model name and the feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    keep = [line for line in text.splitlines()
            if line.startswith(("model name", "flags", "Features", "cpu family", "model\t"))]
    return "\n".join(dict.fromkeys(keep))  # one of each (every CPU repeats them)


def library_path() -> Path:
    """Where the library for these sources, flags and this CPU is kept. Found without running
    the compiler (a forward pass may ask): any compiler's build of the same sources serves."""
    texts = [f"{p.name}\n{p.read_text()}" for p in SOURCES + HEADERS]
    key = hashlib.sha256("\0".join([*texts, " ".join(FLAGS),
                                    _cpu_identity()]).encode()).hexdigest()[:16]
    return cache_dir() / "kernels" / f"cnnkit-kernels-{key}.so"


def build() -> Path:
    """Compile the kernels for this machine if its cache does not hold them yet; the library's
    path. Raises CnnkitError (one line) when there is no compiler or the compile fails."""
    global _why_not
    path = library_path()
    if path.exists():
        return path
    cxx = compiler()
    if cxx is None:
        raise CnnkitError("no C++ compiler (set CXX, or install g++); cnnkit uses torch's ops")
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name in the same folder, then an atomic rename: processes that build at once
    # (tune workers, test runs) never load a half-written library
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, "-o", tmp, *map(str, SOURCES)], capture_output=True,
                              text=True, timeout=COMPILE_TIMEOUT_S)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no output)"])[0]
            raise CnnkitError(f"compiling cnnkit's kernels with {cxx} failed: {first}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if _lib is None:
        _why_not = None  # "not compiled yet" no longer holds: the next loaded() loads it
    return path


def _openmp_runtimes() -> set[str]:
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return set()
    return {line.split()[-1] for line in maps
            if any(n in line for n in ("libgomp", "libiomp", "libomp"))}


def loaded() -> ctypes.CDLL | None:
    """The kernel library, loaded on first use if `build()` has compiled it; None when cnnkit
    uses torch's ops (`why_not()` says why). Never compiles, never raises."""
    global _lib, _why_not
    if _off:
        return None
    if _lib is not None or _why_not is not None:
        return _lib
    if mode() == "torch":
        _why_not = "CNNKIT_KERNELS=torch"
        return None
    import torch  # noqa: F401  (its libgomp first: the library must share it)

    path = library_path()
    if not path.exists():  # compiling is build()'s, never a forward pass's
        _why_not = NOT_BUILT
        return None
    before = _openmp_runtimes()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        _why_not = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None
    if before and _openmp_runtimes() != before:
        _why_not = "the kernel library loaded a second OpenMP runtime beside torch's"
        return None
    abi = getattr(lib, "cnnkit_kernels_abi", lambda: None)()
    if abi != ABI:
        _why_not = f"the cached kernel library has ABI {abi}, not {ABI}"
        return None
    p, i, long = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    for fn in (lib.cnnkit_stem_forward, lib.cnnkit_stem_backward):
        fn.argtypes, fn.restype = [p] * 5 + [i] * 9, None
    for fn in (lib.cnnkit_pool2_forward, lib.cnnkit_pool2_backward):
        fn.argtypes, fn.restype = [p] * 3 + [long] + [i] * 5, None
    f = ctypes.c_float
    lib.cnnkit_bnrelu_forward.argtypes = [p] * 8 + [f, f, long, i, i, i]
    lib.cnnkit_bnrelu_backward.argtypes = [p] * 9 + [long, i, i, i]
    lib.cnnkit_bnrelu_forward.restype = lib.cnnkit_bnrelu_backward.restype = None
    _lib = lib
    return _lib


@contextlib.contextmanager
def disabled():
    """torch's own ops for the calls inside the block (to compare against them)."""
    global _off
    _off += 1
    try:
        yield
    finally:
        _off -= 1


def plain_call(x, *modules) -> bool:
    """No reason to leave this call to torch's ops: a CPU tensor, no tracing, export or
    torch.compile (their graphs must hold torch's ops), no hooks on `modules` or global ones
    (a hook must see the module's own output)."""
    import torch
    from torch.nn.modules import module as m

    if (x.device.type != "cpu" or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
            or m._global_forward_hooks or m._global_forward_pre_hooks):
        return False
    return not any(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks
                   or getattr(mod, "_backward_pre_hooks", None) for mod in modules)


def channels_last(x):
    """x with its channels last in memory (NHWC under an NCHW shape), copied only if need be:
    the layout every kernel reads and writes."""
    import torch

    return x if x.is_contiguous(memory_format=torch.channels_last) \
        else x.contiguous(memory_format=torch.channels_last)


def why_not() -> str | None:
    loaded()
    return _why_not


def description() -> str:
    """For config.json's `resolved.kernels`: 'cnnkit' or 'torch (the reason)'."""
    return "cnnkit" if loaded() is not None else f"torch ({why_not()})"
