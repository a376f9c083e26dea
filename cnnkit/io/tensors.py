"""The one reader of .safetensors files: the header checked before any tensor is allocated.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the bytes. The safetensors library trusts a header
length up to 100 MB and reads any dtype it knows (an F8 tensor reaches cnnkit's code, which
then fails far from the file). Every safetensors file cnnkit reads (saved models, training
states, a run's best weights, PyTorch weights for the applications) comes through
`read_safetensors`, which first checks, in one line naming the file:

    a header of at most MAX_HEADER bytes, inside the file, parsed by cnnkit.io.bounded's parser
    every tensor's dtype one of DTYPES, its shape non-negative integers, and its byte range the
        size its shape and dtype need, inside the file
"""
from __future__ import annotations

import math
from pathlib import Path

from cnnkit.errors import CnnkitError, clipped

MAX_HEADER = 16 * 2**20  # ~150,000 tensors' entries; any real model's header is far smaller
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U8": 1, "BOOL": 1}
DTYPES = tuple(ITEMSIZE)


def safetensors_header(path, what: str = "weights") -> dict:
    """The checked header of a safetensors file: {name: {dtype, shape, data_offsets}}, plus
    `__metadata__` (text to text) when the file has one. Errors: `{path}: unreadable {what}
    ({problem})`."""
    from cnnkit.io.bounded import parse_bounded

    path = Path(path)

    def fail(problem: str) -> CnnkitError:
        return CnnkitError(f"{path}: unreadable {what} ({problem})")

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise fail(f"{size} bytes, shorter than a safetensors header length")
            n = int.from_bytes(head, "little")
            if not 0 < n <= min(MAX_HEADER, size - 8):
                raise fail(f"a safetensors header length of {n:,}; valid: 1 to "
                           f"{min(MAX_HEADER, size - 8):,}")
            text = f.read(n)
    except OSError as e:
        raise fail(e.strerror or str(e)) from None
    header = parse_bounded(text.decode("utf-8", errors="replace"), "json", str(path),
                           label=f"unreadable {what}")
    if not isinstance(header, dict):
        raise fail("its safetensors header is not a mapping")
    room = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            if not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise fail(f"__metadata__ {clipped(entry)}; valid: a mapping of text to text")
            continue
        problem = _entry_problem(entry, room)
        if problem:
            raise fail(f"tensor {clipped(name)} {problem}")
    return header


def _entry_problem(entry, room: int) -> str | None:
    if not isinstance(entry, dict):
        return f"is {clipped(entry)}; valid: a mapping of dtype, shape and data_offsets"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in ITEMSIZE:
        return f"has dtype {clipped(dtype)}; valid: {', '.join(DTYPES)}"
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        return f"has shape {clipped(shape)}; valid: a list of sizes >= 0"
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= room):
        return (f"has data_offsets {clipped(offsets)}; valid: [begin, end] within the file's "
                f"{room:,} bytes of data")
    need = math.prod(shape) * ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != need:
        return (f"of shape {shape} and dtype {dtype} needs {need:,} bytes; the file gives it "
                f"{offsets[1] - offsets[0]:,}")
    return None


def read_safetensors(path, what: str = "weights") -> dict:
    """{name: torch tensor} from a safetensors file, its header checked first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safetensors_header(path, what)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CnnkitError(f"{path}: unreadable {what} ({clipped(e, quote=False)})") from None
