"""Atomic file and directory writes: a reader never sees a half-written file.

Everything cnnkit writes (saved models, checkpoints, run files, caches) goes through here:
write to a temporary sibling, flush and fsync, then `os.replace` onto the final name. What
lands gets the user's normal permissions (0666 / 0777 less the umask), like any tool's output.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from pathlib import Path


# Temporary names are made here rather than by tempfile.mkstemp / mkdtemp, which create 0600
# files and 0700 directories on purpose (private scratch space): renamed into place, those
# would leave every saved model and run file readable by its owner alone. Creating with 0666 /
# 0777 instead lets the kernel apply the umask (or a directory's default ACL, which replaces
# the umask there) exactly as for `open()` and `mkdir`. A writer that brings its own file
# (safetensors' save_file writes a 0600 file and renames it onto the name it is given) is
# then given the mode the kernel chose for our own temporary. So the umask is never read:
# os.umask has no getter, and setting it to learn it would, for an instant, change it for
# every other thread creating files; /proc/self/status is Linux-only and misses default ACLs.
_FILE_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _create_temp(parent: Path, prefix: str, suffix: str, create):
    """`create(name)` on fresh random names beside the target until one is unused: what
    tempfile.mkstemp / mkdtemp do, but with the caller's mode. Returns (result, name)."""
    for _ in range(100):
        name = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            return create(name), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name in {parent}")


def _temp_file(parent: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    return _create_temp(parent, prefix, suffix, lambda name: os.open(name, _FILE_FLAGS, 0o666))


def _temp_dir(parent: Path, prefix: str, suffix: str) -> Path:
    return _create_temp(parent, prefix, suffix, lambda name: os.mkdir(name, 0o777))[1]


def _give_mode(path: Path, mode: int) -> None:
    if not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary file path beside `path`; on success it is renamed onto `path`.

    For writers that want a filename (savefig, safetensors, np.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path.parent, f".{path.stem}.", path.suffix)
    file_mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0666 less the umask, as the kernel chose
    os.close(fd)
    try:
        yield tmp
        _give_mode(tmp, file_mode)  # in case the writer replaced our file with its own
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory; on success it replaces `path` as a whole.

    An existing `path` is moved aside first and removed only after the new one is in place,
    so at every moment either the old or the new directory is complete at `path` (or, for an
    instant between two renames, at its `.old` sibling)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_dir(path.parent, f".{path.name}.", ".tmp")
    dir_mode = stat.S_IMODE(tmp.stat().st_mode)  # 0777 less the umask, as the kernel chose
    try:
        yield tmp
        for f in tmp.rglob("*"):
            _give_mode(f, dir_mode if f.is_dir() else dir_mode & 0o666)
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(path: str | os.PathLike) -> None:
    """Finish an `atomic_dir` replacement cut short between its two renames (a kill at that
    instant leaves the complete old directory at `.NAME.old` and nothing at NAME)."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
