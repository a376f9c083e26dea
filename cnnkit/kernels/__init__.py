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

A library is loaded only once verified: the kernels folder and the library are the user's own
and writable by nobody else, and the library's SHA-256 is the one `build()` recorded beside it
(`<library>.sha256`) when it compiled it. Anything else (a library someone else could have put
there, or one changed since) is never loaded: until it is rebuilt the network runs torch's ops,
and `build()` (so `make setup` and the start of a run) rebuilds it, with a line saying so.

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
import stat
import subprocess
import sys
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
UNVERIFIED = "the cached kernel library failed verification"

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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _owned_by_me_only(path: Path) -> str | None:
    """Why `path` might hold what someone else put there, or None: not the user's own, or
    writable by its group or by others."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to user id {st.st_uid}, not to you"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def unverified(path: Path) -> str | None:
    """Why the library at `path` must not be loaded, or None when it is verified: its folder
    and itself are the user's own and nobody else's to write, and its SHA-256 is the one
    build() recorded beside it."""
    try:
        for p in (path.parent, path):
            why = _owned_by_me_only(p)
            if why:
                return why
        recorded = Path(f"{path}.sha256").read_text().split()
        if not recorded or recorded[0] != _sha256(path):
            return f"{path} is not the library cnnkit compiled (its SHA-256 differs)"
    except FileNotFoundError:
        return f"{path} has no recorded SHA-256 ({path.name}.sha256)"
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    return None


def build() -> Path:
    """Compile the kernels for this machine if its cache does not hold them yet (or holds a
    library that fails verification: rebuilt, saying so on stderr); the library's path.
    Raises CnnkitError (one line) when there is no compiler or the compile fails."""
    global _why_not
    path = library_path()
    if path.exists() or path.is_symlink():
        why = unverified(path)
        if why is None:
            return path
        print(f"cnnkit: warning: {UNVERIFIED}: {why}; rebuilding it", file=sys.stderr)
    cxx = compiler()
    if cxx is None:
        raise CnnkitError("no C++ compiler (set CXX, or install g++); cnnkit uses torch's ops")
    _own_folder(path.parent)
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
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would do; a library is read and mapped
        # the hash first, then the library: a loader never finds a new library unrecorded
        # (a rename replaces a symbolic link found at either name, never its target)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         prefix=f".{path.name}.", suffix=".tmp") as f:
            f.write(f"{_sha256(Path(tmp))}  {path.name}\n")
        os.replace(f.name, f"{path}.sha256")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if _lib is None:
        _why_not = None  # "not compiled yet" no longer holds: the next loaded() loads it
    return path


def _own_folder(folder: Path) -> None:
    """The kernels folder, made the user's own and writable by nobody else (0700); one that
    belongs to someone else is refused, in one line."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = folder.lstat()
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        raise CnnkitError(f"{folder} is not your own folder: cnnkit keeps its compiled kernels "
                          "only in one (set CNNKIT_CACHE to another place); torch's ops are used")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.chmod(folder, 0o700)


def needs_build() -> bool:
    """No library in use that build() could give: none compiled yet, or one that failed
    verification (build() replaces it)."""
    why = why_not() or ""  # None inside disabled(): nothing to build there
    return loaded() is None and (why == NOT_BUILT or why.startswith(UNVERIFIED))


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
    why = unverified(path)  # before a byte of it runs: loading runs its initializers
    if why is not None:
        _why_not = f"{UNVERIFIED}: {why}; `python -m cnnkit.kernels` rebuilds it"
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
