"""One run per directory: an exclusive lock that a killed process does not leave behind.

`flock` on `DIR/.lock` is held by the open file, so the kernel drops it when the process dies,
however it dies (kill -9 included): a stale lock file is harmless, and nobody has to delete
anything by hand. The file records the holder's pid for the message. POSIX only; where fcntl
is missing (Windows) runs are not locked.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cnnkit.errors import CnnkitError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(directory, what: str = "run"):
    """Hold `directory`'s lock for the block; a CnnkitError if another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(directory) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise CnnkitError(f"{directory} is in use by another cnnkit process (pid {holder}): "
                              f"one {what} per directory; wait for it to finish, or choose "
                              "another out") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:  # a full disk: name the lock's folder, not just "no space left"
            raise OSError(e.errno, e.strerror, str(path)) from None
        yield
    finally:
        os.close(fd)  # releases the lock
