"""Verified, resumable downloads with mirror fallback (stdlib urllib only).

`download(urls, dest, sha256)` streams into `dest.part`, resuming an existing partial file with an
HTTP Range request, checks the SHA-256, and only then renames the file onto `dest`. So the cache
only ever holds complete, verified files: a dropped connection leaves a `.part` to resume, and a
file with the wrong checksum is deleted (its bytes can't be trusted for a resume either).

The `.part` file is appended to in place rather than written through `cnnkit.fsutil`: resuming
is the point of it. The publish step (fsync, then `os.replace`) is atomic all the same.

Given the file's published `size`, a download checks for free space before writing and refuses
a body larger than that (plus a small margin): a wrong or hostile mirror cannot fill the disk.
Errors writing the `.part` file (a full disk, a permission) are this machine's, not a mirror's:
they end the download at once as an OSError naming the `.part`, which is kept for a resume.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from cnnkit import __version__
from cnnkit.errors import CnnkitError
from cnnkit.fsutil import fsync_dir, kind_of

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar
USER_AGENT = f"cnnkit/{__version__}"  # some hosts refuse urllib's default agent


class DownloadError(CnnkitError):
    """No mirror delivered a file with the right checksum. `offline` is True when no mirror
    answered at all (the machine looks offline), False when some answered with an error or
    with wrong bytes."""

    def __init__(self, message: str, offline: bool, dest: Path, failures: list[str]):
        super().__init__(message)
        self.offline = offline
        self.dest = dest
        self.failures = failures  # one "host: what went wrong" per mirror


class _Truncated(Exception):
    """The connection ended before the promised number of bytes: resumable."""


class _TooLarge(Exception):
    """The mirror serves more bytes than the file is published with: not the file."""


class _LocalError(Exception):
    """Writing the .part file failed (`error`, an OSError naming it): no mirror can help."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def size_limit(size: int) -> int:
    """The most bytes accepted for a file published with `size` bytes. The checksum already
    pins the exact bytes; the margin (1%, at least 64 KiB) only forgives a catalogue size that
    is slightly off, while a mirror serving something else entirely is cut off early."""
    return size + max(size // 100, 64 << 10)


@contextlib.contextmanager
def _on_disk(part: Path):
    """OS errors inside are about `part` on this machine (f.write on a full disk names no
    file), kept apart from the network's, which send the download on to the next mirror."""
    try:
        yield
    except OSError as e:
        raise _LocalError(OSError(e.errno, e.strerror, str(part))) from None


def _check_space(part: Path, expected: int | None, start: int, reclaimed: int) -> None:
    """Refuse to start writing what cannot fit (`reclaimed`: bytes of .part about to be
    overwritten)."""
    if expected is None:
        return
    need = expected - start
    free = shutil.disk_usage(part.parent).free + reclaimed
    if need > free:
        raise CnnkitError(f"not enough space to download {part.name.removesuffix('.part')} into "
                          f"{part.parent}: it needs {_mb(need)}, {_mb(free)} free; free some "
                          f"space or set CNNKIT_DATA to a folder with room")


class _Progress:
    """A rich bar on a terminal; on a pipe or log file, a few plain lines with no escape codes."""

    def __init__(self, enabled: bool, label: str, total: int | None, done: int):
        self.enabled, self.label, self.total, self.done = enabled, label, total, done
        self.tty = enabled and sys.stderr.isatty()
        self._bar = None
        self._next_pct = 25
        self._t0 = time.perf_counter()
        if not enabled:
            return
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=done)
        else:
            resumed = f", resuming at {_mb(done)}" if done else ""
            size = f" ({_mb(total)})" if total else ""
            print(f"downloading {label}{size}{resumed}", file=sys.stderr, flush=True)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.enabled and self.total:
            pct = 100 * self.done // self.total
            if pct >= self._next_pct and pct < 100:
                print(f"  {self.label}: {pct}% ({_mb(self.done)} of {_mb(self.total)})",
                      file=sys.stderr, flush=True)
                self._next_pct = (pct // 25 + 1) * 25

    def close(self, ok: bool) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled and ok:
            secs = time.perf_counter() - self._t0
            print(f"  {self.label}: done, {_mb(self.done)} in {secs:.1f} s",
                  file=sys.stderr, flush=True)


def _mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"


def sha256_of(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _algorithm(checksum: str) -> str:
    """An MD5 (32 hex digits: what Keras publishes for its weight files) or a SHA-256, told
    apart by length as Keras's get_file does."""
    return "md5" if len(checksum) == 32 else "sha256"


def _verified(path: Path, checksum: str | None) -> bool:
    """Whether `path` holds the bytes `checksum` names; with no checksum (a file published
    without one), whether it exists: its length was already checked while it arrived."""
    if checksum is None:
        return path.is_file()
    return path.is_file() and sha256_of(path, _algorithm(checksum)) == checksum


def _fetch_once(url: str, part: Path, timeout: float, progress: bool, size: int | None) -> None:
    """One HTTP request: append to `part` from its current size. Raises _Truncated when the
    connection ends early (the caller resumes), _TooLarge for a body over `size`'s limit,
    _LocalError when writing `part` fails, urllib/OSError for everything else."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # Range not satisfiable: the partial file is already whole (or longer than the
            # file, i.e. garbage). The checksum decides; a bad .part gets deleted there.
            return
        raise
    with resp:
        if have and resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise OSError(f"server resumed at the wrong offset "
                              f"({resp.headers.get('Content-Range')!r}, wanted {have})")
            mode, start = "ab", have
        else:  # 200: the server ignored the Range header, so start over
            mode, start = "wb", 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        limit = size_limit(size) if size is not None else None
        if limit is not None and total is not None and total > limit:
            raise _TooLarge(f"serves {_mb(total)}, more than the published {_mb(size)}")
        _check_space(part, size or total, start, reclaimed=have if mode == "wb" else 0)
        bar = _Progress(progress, part.name.removesuffix(".part"), total, start)
        ok = False
        try:
            with _on_disk(part):
                f = open(part, mode)
            with f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.IncompleteRead, OSError) as e:
                        # Dropped, reset or stalled mid-body: keep what arrived, resume later.
                        with _on_disk(part):
                            if isinstance(e, http.client.IncompleteRead):
                                f.write(e.partial)
                            f.flush()
                        raise _Truncated(f"connection dropped after {_mb(f.tell())} "
                                         f"({_describe(e)})") from None
                    if not block:
                        break
                    if limit is not None and f.tell() + len(block) > limit:
                        f.close()
                        part.unlink(missing_ok=True)  # not the published file: nothing to resume
                        raise _TooLarge(f"sent more than the published {_mb(size)}")
                    with _on_disk(part):
                        f.write(block)
                    bar.advance(len(block))
                with _on_disk(part):
                    f.flush()
                    os.fsync(f.fileno())
                got = f.tell()
            if total is not None and got < total:
                raise _Truncated(f"connection ended at {got} of {total} bytes")
            ok = True
        finally:
            bar.close(ok)


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        return str(reason.strerror if isinstance(reason, OSError) and reason.strerror else reason)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(e) or type(e).__name__


def download(urls: list[str], dest: str | Path, sha256: str | None, progress: bool = True, *,
             timeout: float = 30.0, attempts: int = 3, size: int | None = None) -> Path:
    """Fetch `dest` from the first of `urls` that delivers bytes with this SHA-256 (or MD5,
    see `_verified`; None for a file published without a checksum: complete by its length).

    Each mirror is tried up to `attempts` times while it keeps making progress (a dropped
    connection resumes with a Range request). `timeout` is the socket timeout in seconds.
    `size`, the published byte size, bounds what a mirror may send (see `size_limit`) and is
    checked against the free space first. Raises DownloadError (a CnnkitError) naming `dest`
    when no mirror succeeds, a CnnkitError when the file cannot fit, and an OSError naming
    the `.part` file when writing it fails (it is kept, to resume).
    """
    dest = Path(dest)
    sha256 = sha256.lower() if sha256 is not None else None
    if os.path.lexists(dest) and not dest.is_file():
        raise CnnkitError(f"'{dest}' is a {kind_of(os.lstat(dest).st_mode)}, not a file; "
                          f"move it away to download {dest.name} there")
    if dest.is_file() and _verified(dest, sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnkitError(f"cannot create download directory {dest.parent} ({e.strerror}); "
                          f"set CNNKIT_DATA to a writable directory") from None

    failures: list[str] = []
    answered = False  # did any server respond at all? If none did, we look offline.
    for url in urls:
        host = urlsplit(url).netloc or url
        # A .part left by an earlier run may be stale (another file version): if resuming it
        # yields a bad checksum, this mirror gets one more try from byte 0.
        fresh_retry = part.exists() and part.stat().st_size > 0
        tries = 0
        while tries < attempts:
            tries += 1
            before = part.stat().st_size if part.exists() else 0
            try:
                _fetch_once(url, part, timeout, progress, size)
            except _LocalError as e:
                raise e.error from None
            except _TooLarge as e:
                answered = True
                failures.append(f"{host}: {e}")
                break
            except _Truncated as e:
                answered = True
                now = part.stat().st_size if part.exists() else 0
                if now > before:
                    continue  # progress was made: resume from where it stopped
                failures.append(f"{host}: {e}")
                break
            except urllib.error.HTTPError as e:
                answered = True
                failures.append(f"{host}: {_describe(e)}")
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                failures.append(f"{host}: {_describe(e)}")
                break
            answered = True
            actual = sha256_of(part, _algorithm(sha256)) if sha256 and part.exists() else ""
            if part.exists() and (sha256 is None or actual == sha256):
                os.replace(part, dest)  # publish: dest is complete and verified, or absent
                fsync_dir(dest.parent)
                return dest
            # Wrong bytes can't be resumed into right ones: drop them, try the next mirror.
            part.unlink(missing_ok=True)
            if fresh_retry:
                fresh_retry = False
                tries = 0
                continue
            failures.append(f"{host}: {'MD5' if _algorithm(sha256) == 'md5' else 'SHA-256'} "
                            f"mismatch (got {actual[:12]}..., expected {sha256[:12]}...)")
            break
        else:
            failures.append(f"{host}: connection kept dropping ({attempts} attempts)")

    if answered:
        msg = (f"could not download {dest.name}: {'; '.join(failures)}; "
               f"put a good copy at {dest}")
    else:
        msg = (f"could not download {dest.name}: this machine looks offline "
               f"({'; '.join(failures) or 'no URLs'}); put the file at {dest}")
    raise DownloadError(msg, offline=not answered, dest=dest, failures=failures)
