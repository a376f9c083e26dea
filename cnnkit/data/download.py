"""Verified, resumable downloads with mirror fallback (stdlib urllib only).

`download(urls, dest, sha256)` streams into `dest.part`, resuming an existing partial file with an
HTTP Range request, checks the SHA-256, and only then renames the file onto `dest`. So the cache
only ever holds complete, verified files: a dropped connection leaves a `.part` to resume, and a
file with the wrong checksum is deleted (its bytes can't be trusted for a resume either).

The `.part` file is appended to in place rather than written through `cnnkit.fsutil`: resuming
is the point of it. The publish step (fsync, then `os.replace`) is atomic all the same.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from cnnkit import __version__
from cnnkit.errors import CnnkitError
from cnnkit.fsutil import fsync_dir

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


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP request: append to `part` from its current size. Raises _Truncated when the
    connection ends early (the caller resumes), urllib/OSError for everything else."""
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
        bar = _Progress(progress, part.name.removesuffix(".part"), total, start)
        ok = False
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.IncompleteRead, OSError) as e:
                        # Dropped, reset or stalled mid-body: keep what arrived, resume later.
                        if isinstance(e, http.client.IncompleteRead):
                            f.write(e.partial)
                        f.flush()
                        raise _Truncated(f"connection dropped after {_mb(f.tell())} "
                                         f"({_describe(e)})") from None
                    if not block:
                        break
                    f.write(block)
                    bar.advance(len(block))
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


def download(urls: list[str], dest: str | Path, sha256: str, progress: bool = True, *,
             timeout: float = 30.0, attempts: int = 3) -> Path:
    """Fetch `dest` from the first of `urls` that delivers bytes with this SHA-256.

    Each mirror is tried up to `attempts` times while it keeps making progress (a dropped
    connection resumes with a Range request). `timeout` is the socket timeout in seconds.
    Raises DownloadError (a CnnkitError) naming `dest` when no mirror succeeds.
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.exists() and sha256_of(dest) == sha256:
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
                _fetch_once(url, part, timeout, progress)
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
            actual = sha256_of(part) if part.exists() else ""
            if actual == sha256:
                os.replace(part, dest)  # publish: dest is complete and verified, or absent
                fsync_dir(dest.parent)
                return dest
            # Wrong bytes can't be resumed into right ones: drop them, try the next mirror.
            part.unlink(missing_ok=True)
            if fresh_retry:
                fresh_retry = False
                tries = 0
                continue
            failures.append(f"{host}: SHA-256 mismatch (got {actual[:12]}..., "
                            f"expected {sha256[:12]}...)")
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
