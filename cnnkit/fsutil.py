"""Atomic file and directory writes: a reader never sees a half-written file.

Everything cnnkit writes (saved models, checkpoints, run files, caches) goes through here:
write to a temporary sibling, flush and fsync, then `os.replace` onto the final name. What
lands gets the user's normal permissions (0666 / 0777 less the umask), like any tool's output.

A write that fails for an OS reason (a full disk, a read-only mount, a permission) removes its
temporary and raises an OSError naming the path the caller asked for, never the temporary, so
the CLI can say `cnnkit: error: runs/a/config.json: no space left on device`. The wording of
such errors (`describe`) and the check that a path is a regular file one may read
(`readable_file`) live here too: every reader and writer says the same thing about a path.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from cnnkit.errors import CnnkitError


# What an OS error means, in the words a shell uses (lower case, as after "cnnkit: error: PATH:").
# ENOTDIR and EEXIST are worded from the path itself (see `describe`).
WORDING = {
    errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied", errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system", errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, not a file", errno.ENOTEMPTY: "folder not empty",
    errno.EFBIG: "file too large", errno.EIO: "input/output error (a failing disk?)",
}

_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symbolic link"))


def kind_of(mode: int) -> str:
    """'file', 'folder', 'FIFO (named pipe)', ... for an st_mode."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _a(noun: str) -> str:
    # "an npz file", "an ONNX file": initialisms read out from a vowel sound
    vowel = noun[:1].lower() in "aeiou" or noun.split()[0].lower() in ("npz", "onnx")
    return f"{'an' if vowel else 'a'} {noun}"


def describe(e: OSError, path=None) -> str:
    """`e` as the end of a one-line message: "no space left on device", "permission denied",
    "runs is a file, not a folder"."""
    path = e.filename if path is None else path
    if e.errno == errno.ENOTDIR and path is not None:
        # some folder on the way is not one: name it (`afile/x`: afile is a file)
        p = Path(os.fsdecode(path))
        for q in (p, *p.parents):
            if os.path.lexists(q) and not q.is_dir():
                what = kind_of(os.lstat(q).st_mode)
                return f"is {_a(what)}, not a folder" if q == p else f"{q} is {_a(what)}, not a folder"
        return "not a folder"
    if e.errno == errno.EEXIST and path is not None:
        p = os.fsdecode(path)
        if os.path.lexists(p) and not os.path.isdir(p):
            return f"is {_a(kind_of(os.lstat(p).st_mode))}, not a folder"
        return "already exists"
    if e.errno in WORDING:
        return WORDING[e.errno]
    why = e.strerror or str(e)
    return why[:1].lower() + why[1:]


def readable_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` if it is a regular file this process may read, else a CnnkitError naming it
    (`'x.png' is a FIFO (named pipe), not an image file`).

    The type is checked before the file is opened: opening a FIFO for reading waits for a
    writer that may never come, and a device can be endless. The open that follows is
    non-blocking and closed at once: it asks the kernel (ACLs, mounts) rather than guessing
    from permission bits, which root ignores."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CnnkitError(f"{what} '{path}' does not exist") from None
    except OSError as e:
        raise CnnkitError(f"{what} '{path}': {describe(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CnnkitError(f"'{path}' is {_a(kind_of(st.st_mode))}, not {_a(what)}")
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)))
    except OSError as e:
        raise CnnkitError(f"{what} '{path}': {describe(e)}") from None
    return path


def _check_target(path: Path, folder: bool) -> None:
    """Refuse to replace what is not a file (or, for `atomic_dir`, a folder): os.replace would
    swap a regular file in for a FIFO, a socket or, for root, /dev/null itself, and a folder
    in for a file (which atomic_dir's clean-up could not remove)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # absent, or unreadable: creating the temporary reports it
    want = "folder" if folder else "file"
    if kind_of(mode) != want:
        raise CnnkitError(f"'{path}' is {_a(kind_of(mode))}, not {_a(want)}; choose another path")


def _about_target(e: BaseException, path: Path, tmp: Path) -> BaseException:
    """The error a failed write raised, about `path` rather than our temporary `tmp`. f.write
    and fsync name no file at all; safetensors wraps OS errors in its own type."""
    if isinstance(e, OSError):
        code, why, name = e.errno, e.strerror, e.filename
    else:  # Rust's io::Error as safetensors shows it: "... (os error 28)"
        m = re.search(r"\(os error (\d+)\)", str(e)) if isinstance(e, Exception) else None
        if m is None:
            return e
        code, why, name = int(m[1]), os.strerror(int(m[1])), None
    if code is None:
        return e
    target = path
    if name is not None:
        try:
            target = path / Path(os.fsdecode(name)).relative_to(tmp)  # in our temporary
        except ValueError:
            return e  # about some other path (a file the writer reads): already named
    return OSError(code, why, str(target))  # OSError(2, ...) is a FileNotFoundError, etc.


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
    tempfile.mkstemp / mkdtemp do, but with the caller's mode. Returns (result, name).

    A name carries its writer's process id (`.model.4242-9f3a1c2e.onnx`): a writer killed
    mid-write (kill -9, a power cut) leaves its temporary, and the next write beside the same
    target removes those whose process is gone."""
    _remove_stale(parent, prefix, suffix)
    for _ in range(100):
        name = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            return create(name), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name in {parent}")


def _remove_stale(parent: Path, prefix: str, suffix: str) -> None:
    """Remove the temporaries for this target left by processes that no longer run."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[0-9a-f]{8}" + re.escape(suffix))
    try:
        names = [e.name for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or _running(int(match.group(1))):
            continue
        stale = parent / name
        with contextlib.suppress(OSError):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's, or no such number
        return True
    return True


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
    _check_target(path, folder=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new(path, lambda: _temp_file(path.parent, f".{path.name}.", ".tmp"))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _reraise(e, path, tmp)
    fsync_dir(path.parent)
    return path


def _new(path: Path, create):
    """create() of a temporary beside `path`; its failure (a read-only or full folder) named
    as `path`, the name the user knows."""
    try:
        return create()
    except OSError as e:
        if e.filename is None or Path(os.fsdecode(e.filename)).parent != path.parent:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


def _reraise(e: BaseException, path: Path, tmp: Path):
    err = _about_target(e, path, tmp)
    if err is e:
        raise e
    raise err from e


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary file path beside `path`; on success it is renamed onto `path`.

    For writers that want a filename (savefig, safetensors, np.save)."""
    path = Path(path)
    _check_target(path, folder=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new(path, lambda: _temp_file(path.parent, f".{path.stem}.", path.suffix))
    file_mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0666 less the umask, as the kernel chose
    os.close(fd)
    try:
        yield tmp
        _give_mode(tmp, file_mode)  # in case the writer replaced our file with its own
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _reraise(e, path, tmp)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory; on success it replaces `path` as a whole.

    An existing `path` is moved aside first and removed only after the new one is in place,
    so at every moment either the old or the new directory is complete at `path` (or, for an
    instant between two renames, at its `.old` sibling)."""
    path = Path(path)
    _check_target(path, folder=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new(path, lambda: _temp_dir(path.parent, f".{path.name}.", ".tmp"))
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
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise(e, path, tmp)


def recover_dir(path: str | os.PathLike) -> None:
    """Finish an `atomic_dir` replacement cut short between its two renames (a kill at that
    instant leaves the complete old directory at `.NAME.old` and nothing at NAME)."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
