"""`folder:PATH` — images in one subfolder per class, like Keras's `flow_from_directory`.

Two layouts:
    PATH/<class>/<image>                          one set, no official test split
    PATH/train/<class>/<image> + PATH/test/<class>/<image>   (test optional)
    and PATH/validation/<class>/<image> beside them (optional): the validation split
    (`Dataset.x_val`), which a run then uses instead of splitting train
Class names are the subfolder names, sorted. Images are decoded once, converted to one
channel count and one size, and the result is cached as safetensors in cnnkit's cache
directory under a key built from every file's relative path, byte size and mtime plus the
requested conversion; a second load only stats the files and maps one file (checked against
the CRC-32 it carries: a damaged cache is rebuilt, never returned). Decoding streams a chunk
at a time into that file and the images are memory-mapped from it (cnnkit.data.mapped), so a
folder larger than memory loads, and the processes of a distributed run share one copy.
Unreadable files are skipped and named (a warning on stderr and `info['skipped']`).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnnkit.data.base import Dataset
from cnnkit.data.images import (DECODE_ERRORS, EXIF_ORIENTATION, check_channels, check_size,
                                 is_gray, load_image, pillow_open)
from cnnkit.data.mapped import build_or_map, pop_json, splits_fit
from cnnkit.errors import CnnkitError, printable

# Bump when decoding changes, so old caches are not reused (2: resized by convert_images;
# 3: streamed and memory-mapped, cnnkit.data.mapped).
CACHE_FORMAT = "cnnkit-folder-3"
_CHUNK_BYTES = 32 << 20  # decoded pixels held at once while decoding
_WORKERS = min(8, os.cpu_count() or 1)  # Pillow releases the GIL while decoding


def _map(fn, items: list) -> list:
    """[fn(i) for i in items], in a few threads, one contiguous chunk per task.

    Per-file futures would cost as much as decoding a 28x28 PNG; chunks keep the overhead
    negligible, and threads pay off on large images (JPEG/PNG decoding releases the GIL)."""
    n = max(1, min(_WORKERS * 4, len(items) // 64))
    bounds = [len(items) * i // n for i in range(n + 1)]
    chunks = [items[a:b] for a, b in zip(bounds, bounds[1:])]
    with ThreadPoolExecutor(_WORKERS) as pool:
        parts = pool.map(lambda chunk: [fn(i) for i in chunk], chunks)
    return [r for part in parts for r in part]


def cache_root() -> Path:
    """Where decoded folders are cached: `folders/` in cnnkit's data cache ($CNNKIT_DATA...)."""
    from cnnkit.data.mnist import cache_dir

    return Path(cache_dir()) / "folders"


def _class_dirs(split_dir: Path, hidden: list[str]) -> list[Path]:
    """Sorted class subfolders of `split_dir`; an error when there are none. Hidden ones (a
    name starting with '.': .ipynb_checkpoints, .git, but also '..x' or '...') are not classes,
    and are appended to `hidden` so that the load says so."""
    listed = _scandir(str(split_dir))
    hidden += [os.path.join(split_dir.name, e.name) for e in listed
               if e.name.startswith(".") and e.is_dir()]
    entries = [Path(e.path) for e in listed if not e.name.startswith(".")]
    classes = sorted((d for d in entries if d.is_dir()), key=lambda d: d.name)
    if not classes:
        loose = [f for f in entries if f.is_file()]
        if loose:
            raise CnnkitError(
                f"folder '{split_dir}' has files but no class subfolders; "
                f"put each class's images in '{split_dir}/<class name>/'"
            )
        raise CnnkitError(f"folder '{split_dir}' is empty; expected one subfolder per class")
    return classes


def _walk(folder: str, root_len: int, out: list, k: int) -> None:
    """Append (path, class index, 'relative path|bytes|mtime') for each non-hidden file, depth
    first in name order.

    os.scandir, not pathlib: on a second run this scan is most of the load time. A stack of
    listings, not recursion: a folder nested thousands deep must not be a RecursionError."""
    stack = [iter(_scandir(folder))]
    while stack:
        e = next(stack[-1], None)
        if e is None:
            stack.pop()
        elif e.name.startswith("."):
            continue  # .DS_Store, editor swap files, our own temp files
        elif e.is_dir(follow_symlinks=False):  # no following links: a link loop never ends
            stack.append(iter(_scandir(e.path)))
        elif e.is_file():
            st = e.stat()
            rel = e.path[root_len:].replace(os.sep, "/")
            out.append((e.path, k, f"{rel}|{st.st_size}|{st.st_mtime_ns}"))


def _scandir(folder: str) -> list[os.DirEntry]:
    """The folder's entries sorted by name; an unreadable folder is one line naming it."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise CnnkitError(f"cannot read folder '{folder}': {e.strerror or e}") from None


def _scan(root: Path, classes_only: bool = False
          ) -> dict[str, tuple[Path, list[str], list[tuple[str, int, str]]]]:
    """{split: (its folder, class names, [(file, class index, stamp)])} for the layout
    (`classes_only`: every subfolder is a class, even one named 'train')."""
    if not classes_only and (root / "train").is_dir():
        split_dirs = {"train": root / "train"}
        if (root / "test").is_dir():
            split_dirs["test"] = root / "test"
        if (root / "validation").is_dir():  # Keras's data/{train,validation} (seed 001)
            split_dirs["validation"] = root / "validation"
    else:
        split_dirs = {"train": root}
    out, hidden = {}, []
    for split, split_dir in split_dirs.items():
        classes = _class_dirs(split_dir, hidden)
        files: list[tuple[str, int, str]] = []
        for k, d in enumerate(classes):
            _walk(str(d), len(str(root)) + 1, files, k)
        out[split] = (split_dir, _class_names(classes, split_dir), files)
    if hidden:
        shown = ", ".join(repr(printable(h)) for h in hidden[:10])
        print(f"cnnkit: warning: hidden folder(s) {shown} in '{printable(str(root))}' are not "
              "classes (their names start with '.'); rename them to train on them",
              file=sys.stderr)
    names = out["train"][1]
    if len(names) < 2:
        raise CnnkitError(
            f"folder '{split_dirs['train']}' has a single class ({names[0]!r}); "
            "a classifier needs at least 2 class subfolders"
        )
    for split in ("test", "validation"):
        if split in out and out[split][1] != names:
            raise CnnkitError(
                f"{split} classes {out[split][1]} in '{split_dirs[split]}' differ from "
                f"train classes {names}"
            )
    return out


def _class_names(classes: list[Path], split_dir: Path) -> list[str]:
    """Each folder's name as a class name safe to show anywhere (errors.printable: a byte that
    is not UTF-8 as \\xff, an escape character made visible); two folders whose names show
    alike are one line, never one class silently."""
    names = [printable(d.name) for d in classes]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise CnnkitError(f"folder '{printable(str(split_dir))}' has two class folders shown as "
                          f"{twice!r} (one of them not UTF-8 or holding control characters); "
                          "rename one of them")
    return names


def _cache_key(scan: dict, channels, size) -> str:
    """The folder's content, not its path: each file's path inside it, size and mtime (which a
    rename or a move keeps), so a renamed folder maps the cache it already has."""
    h = hashlib.sha256(_fs_bytes(f"{CACHE_FORMAT}|{channels}|{size}\n"))
    for split, (_, names, files) in scan.items():
        h.update(f"{split}:{json.dumps(names)}\n".encode())
        h.update(_fs_bytes("\n".join(stamp for _, _, stamp in files)))
    return h.hexdigest()[:32]


def _fs_bytes(text: str) -> bytes:
    """UTF-8, with the raw bytes back for file names that are not UTF-8 (os.fsdecode's lone
    surrogates, which plain .encode() refuses)."""
    return text.encode("utf-8", "surrogateescape")


def _probe(path: str) -> tuple[tuple[int, int], bool] | str:
    """((H, W), is gray) from the file's header, or the reason it cannot be read."""
    try:
        with pillow_open(path) as img:
            w, h = img.size
            if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # shown turned 90°
                w, h = h, w
            return (h, w), is_gray(img)
    except DECODE_ERRORS as e:
        return f"{type(e).__name__}: {e}"


def _resolve(files: list[str], channels, size, bad: dict) -> tuple[int, tuple]:
    """Fill in channels (1 only if every image is gray) and size (the most common one)."""
    probes = _map(_probe, files)
    sizes, grays = Counter(), []
    for f, p in zip(files, probes):
        if isinstance(p, str):
            bad[f] = p
        else:
            sizes[p[0]] += 1
            grays.append(p[1])
    if size is None and sizes:
        size = sizes.most_common(1)[0][0]
    if channels is None:
        channels = 1 if grays and all(grays) else 3
    return channels, size


def _decode_into(buf: np.ndarray, j: int, path: str, channels: int, size) -> str | None:
    """Decode `path` into buf[j]; the reason it cannot be read, or None."""
    try:
        buf[j] = load_image(path, channels, size)
    except CnnkitError as e:
        return str(e)
    return None


def skipped_text(skipped: list[str], shown: int = 5) -> str:
    """'3 unreadable files: a.png, b.jpg, ... (1 more)': a count and the first few names."""
    names = ", ".join(map(printable, skipped[:shown])) + (f", ... ({len(skipped) - shown} more)"
                                          if len(skipped) > shown else "")
    return f"{len(skipped):,} unreadable file{'s' * (len(skipped) != 1)}: {names}"


def _warn_skipped(root: Path, skipped: list[str]) -> None:
    print(f"cnnkit: warning: skipped {skipped_text(skipped)} (in '{root}')", file=sys.stderr)


def _build(root: Path, scan: dict, channels, size, sink) -> None:
    """Decode every file into `sink` (a CacheWriter or MemorySink) a chunk at a time, so a
    folder larger than memory streams through: x_<split> (N, H, W, C) uint8 for each split,
    then y_<split> int64 and the skipped files (JSON, as uint8 bytes)."""
    bad: dict[str, str] = {}  # path -> why it could not be read
    all_files = [f for _, _, files in scan.values() for f, _, _ in files]
    if channels is None or size is None:
        channels, size = _resolve(all_files, channels, size, bad)
    labels = {}
    for split, (split_dir, names, files) in scan.items():
        todo = [(f, k) for f, k, _ in files if f not in bad]
        if size is None:  # no file had a readable header
            raise CnnkitError(f"class folder '{split_dir / names[0]}' has no readable images")
        sink.begin(f"x_{split}", "U8", (*size, channels))
        step = max(1, _CHUNK_BYTES // (size[0] * size[1] * channels))
        buf = np.empty((min(step, len(todo)), *size, channels), np.uint8)  # (n, H, W, C), reused
        good: list[int] = []
        for i in range(0, len(todo), step):
            chunk = todo[i:i + step]
            errors = _map(lambda j: _decode_into(buf, j, chunk[j][0], channels, size),
                          list(range(len(chunk))))
            ok = [j for j, e in enumerate(errors) if e is None]
            for (f, k), e in zip(chunk, errors):
                if e is None:
                    good.append(k)
                else:
                    bad[f] = e
            if ok:  # one chunk in memory at most
                sink.write(buf[:len(chunk)] if len(ok) == len(chunk) else buf[ok])
        counts = Counter(good)
        for k, name in enumerate(names):
            if counts[k] == 0:
                raise CnnkitError(f"class folder '{split_dir / name}' has no readable images")
        labels[split] = np.array(good, dtype=np.int64)
    for split, y in labels.items():
        sink.add(f"y_{split}", y)
    skipped = sorted(os.path.relpath(f, root).replace(os.sep, "/") for f in bad)
    sink.add("skipped", np.frombuffer(_fs_bytes(json.dumps(skipped)), np.uint8))


def _fits(tensors: dict, scan: dict, n_classes: int) -> tuple[dict, list[str]] | None:
    """The cached tensors (images mapped, not read) and skipped files; None when the cache
    does not fit the folder: a cache is rebuilt, never trusted."""
    skipped = pop_json(tensors, "skipped")
    if (not isinstance(skipped, list) or not all(isinstance(f, str) for f in skipped)
            or not splits_fit(tensors, scan, n_classes)):
        return None
    return tensors, skipped


def _row_files(root: Path, scan: dict, skipped: list[str]) -> dict[str, list[str]]:
    """{split: the relative path of each row's file}: the scan's order less the skipped."""
    cut, bad = len(str(root)) + 1, set(skipped)
    out = {}
    for split, (_, _, files) in scan.items():
        rel = (f[cut:].replace(os.sep, "/") for f, _, _ in files)
        out[split] = [r for r in rel if r not in bad]
    return out


def load_folder(path: str | os.PathLike, channels: int | None = None, size=None,
                classes_only: bool = False) -> Dataset:
    """Load `folder:PATH` as a Dataset (cached after the first decode). `classes_only`: every
    subfolder is a class (Keras's image_dataset_from_directory), never a train/test layout.
    `info['files']` names each split's images in row order (paths relative to the folder)."""
    channels, size = check_channels(channels), check_size(size)
    root = Path(path).expanduser()
    if not root.exists():
        raise CnnkitError(f"image folder '{root}' does not exist")
    if not root.is_dir():
        raise CnnkitError(f"'{root}' is not a folder; folder:PATH needs a folder of class subfolders")
    root = root.resolve()
    scan = _scan(root, classes_only)
    class_names = scan["train"][1]
    cache = cache_root() / f"{_cache_key(scan, channels, size)}.safetensors"

    source = _fs_bytes(str(root)).decode("utf-8", "backslashreplace")  # safetensors: UTF-8
    (tensors, skipped), cached = build_or_map(
        cache, {"format": CACHE_FORMAT, "source": source},
        lambda w: _build(root, scan, channels, size, w),
        lambda t: _fits(t, scan, len(class_names)))
    if skipped:
        _warn_skipped(root, skipped)
    return Dataset.from_splits(
        f"folder:{path}", class_names, tensors, str(root),
        {"skipped": skipped, "cache": str(cache), "cached": cached,
         "files": _row_files(root, scan, skipped),
         "layout": "classes" if scan["train"][0] == root else
         "/".join(scan) if "validation" in scan else "train/test"})
