"""What cnnkit keeps in its caches, with sizes, and clearing all or part of it (`cnnkit cache`).

    cache_parts()            # [Part(name, what, folder, entries=[Entry(name, bytes, source)])]
    clear_cache(["folders"]) # removes those parts' entries; returns the bytes freed

The parts, each a set of entries cnnkit itself writes (nothing else in the folder is listed or
removed, so a CNNKIT_DATA that is also a folder of your own files keeps them):
    datasets  the MNIST-family datasets downloaded or decoded (`<data cache>/<name>/`)
    folders   decoded image folders (`folder:PATH`), one file each, keyed by the folder's
              content (so a renamed folder maps the same file: cnnkit.data.folder)
    decoded   decoded npz files and tables (csv:, parquet:, hf:), and images converted to
              another size or channel count
    models    pretrained weights downloaded (cnnkit.model.applications.pretrained)
    kernels   cnnkit's C++ kernels compiled for this CPU (cnnkit.kernels: `$CNNKIT_CACHE`)
The data cache is `$CNNKIT_DATA`, else `$XDG_CACHE_HOME/cnnkit`, else `~/.cache/cnnkit`
(cnnkit.data.mnist.cache_dir). Everything there is rebuilt or downloaded again when needed.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import CnnkitError, one_of

PART_NAMES = ("datasets", "folders", "decoded", "models", "kernels")


@dataclass
class Entry:
    name: str
    bytes: int
    source: str | None = None  # a decoded folder's: the folder it was first decoded from


@dataclass
class Part:
    name: str
    what: str
    folder: Path
    entries: list[Entry] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.entries)


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for top, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(top, f)).st_size
            except OSError:  # removed while we looked
                pass
    return total


def _source(path: Path) -> str | None:
    """The "source" a decoded folder's safetensors header records (cnnkit.data.mapped)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= 1 << 20:
                return None
            source = json.loads(f.read(n)).get("__metadata__", {}).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) else None


def _entries(folder: Path, keep, sources: bool = False) -> list[Entry]:
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir()):
        if not p.name.startswith(".") and keep(p):
            found.append(Entry(p.name, _size(p), _source(p) if sources else None))
    return found


def cache_parts() -> list[Part]:
    """Each part of cnnkit's caches, with what it holds now."""
    from cnnkit import kernels
    from cnnkit.data.mnist import MNIST_FAMILY, cache_dir

    data = Path(cache_dir())
    safetensors = lambda p: p.suffix == ".safetensors"  # noqa: E731
    return [
        Part("datasets", "MNIST-family datasets, downloaded and decoded", data,
             _entries(data, lambda p: p.name in MNIST_FAMILY and p.is_dir())),
        Part("folders", "decoded image folders (folder:PATH)", data / "folders",
             _entries(data / "folders", safetensors, sources=True)),
        Part("decoded", "decoded npz files and tables, images converted to another size", data,
             [Entry(f"{sub}/{e.name}", e.bytes) for sub in ("npz", "tables", "converted")
              for e in _entries(data / sub, safetensors)]),
        Part("models", "pretrained weights downloaded", data / "models",
             _entries(data / "models", lambda p: True)),
        Part("kernels", "cnnkit's C++ kernels compiled for this CPU", kernels.cache_dir() / "kernels",
             _entries(kernels.cache_dir() / "kernels", lambda p: p.name.startswith("cnnkit-kernels-"))),
    ]


def clear_cache(names=()) -> int:
    """Remove the entries of the parts named (every part when none is named); the bytes
    freed. An unknown part is refused before anything is removed."""
    for name in names:
        if name not in PART_NAMES:
            raise one_of("cache part", name, PART_NAMES)
    freed = 0
    for part in cache_parts():
        if names and part.name not in names:
            continue
        for e in part.entries:
            path = part.folder / e.name
            try:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            except FileNotFoundError:  # another process cleared it first
                continue
            except OSError as err:
                raise CnnkitError(f"cannot remove {path}: {err.strerror or err}") from None
            freed += e.bytes
    return freed


def format_size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


def cache_text(parts: list[Part]) -> str:
    """The listing `cnnkit cache` prints: each part, its folder and size, then its entries."""
    lines = []
    for part in parts:
        count = f"{len(part.entries)} item{'s' * (len(part.entries) != 1)}"
        lines.append(f"{part.name:<9} {format_size(part.bytes):>10}  {count}: {part.what} "
                     f"({part.folder})")
        for e in part.entries:
            lines.append(f"  {e.name}  {format_size(e.bytes)}"
                         + (f"  from {e.source}" if e.source else ""))
    total = sum(p.bytes for p in parts)
    lines.append(f"total     {format_size(total):>10}  (cnnkit cache clear [PART ...] removes it: "
                 "everything is rebuilt or downloaded again when needed)")
    return "\n".join(lines)
