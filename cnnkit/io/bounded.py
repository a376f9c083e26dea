"""Bounded reading of JSON, YAML and TOML descriptions (the io stage).

Every description cnnkit reads goes through `read_bounded`: model files, run files, a saved
model's model.json, a run's config.json, a training state's state.json. A description is small,
so what no description needs is refused in one line before anything is built from it (and
before a parser or a later walk over it could take minutes or gigabytes):

    a file over MAX_BYTES (4 MiB) of JSON, MAX_HANDWRITTEN_BYTES (256 KiB) of YAML or TOML
        (they parse ~100× slower: 256 KiB of YAML takes about a second even with libyaml), or
        MAX_STATE_BYTES (64 MiB) for state.json, whose history grows with every epoch
    lists and mappings nested over MAX_DEPTH (64) deep; YAML aliases that expand a document
        past MAX_VALUES (1,000,000) values (the "billion laughs": PyYAML builds it in
        microseconds from shared nodes, and any walk over it then never ends)
    NaN and infinity (`.nan`, `NaN`, `1e999999`), except in state.json, where an early-stopping
        `best` is legitimately inf; integers over MAX_DIGITS (100) digits
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from cnnkit.errors import CnnkitError, clipped

MODEL_FILE_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}

MAX_BYTES = 4 * 2**20
MAX_HANDWRITTEN_BYTES = 256 * 2**10
MAX_STATE_BYTES = 64 * 2**20
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
MAX_DIGITS = 100
_MAX_INT_BITS = 333  # 2**333 has 101 digits: ints are measured without converting them to text


def read_structured(path, what: str = "model file") -> object:
    """Parse a YAML/TOML/JSON file; a syntax error names the file and line."""
    path = Path(path)
    if path.suffix not in MODEL_FILE_SUFFIXES:
        raise CnnkitError(f"{path}: unknown {what} type {clipped(path.suffix)}; valid: "
                          f"{', '.join(MODEL_FILE_SUFFIXES)}")
    return read_bounded(path, FORMATS[path.suffix], what)


def read_bounded(path, fmt: str, what: str, max_bytes: int | None = None,
                 nonfinite: bool = False, label: str | None = None) -> object:
    """The parsed contents of a description file ('json', 'yaml' or 'toml'), within the bounds
    above. Errors are `{path}: {problem}`, or `{path}: {label} ({problem})` with a label."""
    path = Path(path)
    limit = max_bytes or (MAX_BYTES if fmt == "json" else MAX_HANDWRITTEN_BYTES)
    from cnnkit.fsutil import readable_file

    readable_file(path, what)  # a FIFO or a folder is named as such, never opened
    too_big = CnnkitError(f"{path}: too large for a {what}; valid: at most {limit:,} bytes "
                          f"({_size(limit)})")
    try:
        if path.stat().st_size > limit:
            raise too_big  # before reading a byte of it
        with path.open("rb") as f:
            data = f.read(limit + 1)  # a file still growing stops here all the same
    except OSError as e:
        raise CnnkitError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > limit:
        raise too_big
    return parse_bounded(data.decode("utf-8", errors="replace"), fmt, str(path), nonfinite,
                         label)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def parse_bounded(text: str, fmt: str, where: str, nonfinite: bool = False,
                  label: str | None = None) -> object:
    """`text` parsed as `fmt`, within MAX_DEPTH, MAX_VALUES and MAX_DIGITS, and free of NaN and
    infinity unless `nonfinite`. Every problem is one CnnkitError naming `where`."""
    def fail(problem: str) -> CnnkitError:
        return CnnkitError(f"{where}: {label} ({problem})" if label else f"{where}: {problem}")

    try:
        data = _parse(text, fmt, fail)
    except CnnkitError:
        raise
    except RecursionError:  # json's C scanner, tomllib and PyYAML's composer recurse per level
        raise fail(_too_deep) from None
    except ValueError as e:  # int() refuses a number over 4,300 digits while parsing it
        digits = re.search(r"value has (\d+) digits", str(e))
        if digits is None:
            raise
        raise fail(f"a number of {int(digits[1]):,} digits; valid: at most {MAX_DIGITS} digits"
                   ) from None
    _check_values(data, nonfinite, fail)
    return data


_too_deep = f"lists and mappings nested too deep; valid: at most {MAX_DEPTH} levels"


def _parse(text: str, fmt: str, fail):
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise fail(f"line {e.lineno}: {e.msg}") from None
    if fmt == "toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise fail(clipped(str(e), quote=False)) from None
    import yaml

    # libyaml's loader: ~15× faster than PyYAML's own, and it stops at 1,000 levels itself
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()  # composed, not yet built: aliases are shared nodes
        if node is not None:
            _check_yaml_nodes(node, fail)
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "nesting depth" in problem:
            raise fail(_too_deep) from None
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise fail(where + clipped(problem, quote=False)) from None
    finally:
        loader.dispose()


def _check_yaml_nodes(root, fail) -> None:
    """Depth and expanded size of a composed YAML document, counted over its node graph, where
    an alias is the anchored node itself: each node is visited once, however often it is used."""
    import yaml

    def children(node):
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return node.value if isinstance(node, yaml.SequenceNode) else ()

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()  # the nodes being visited: an alias to one of them is a cycle
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            kids = children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 0 if isinstance(node, yaml.ScalarNode) else 1 + max(
                (depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_VALUES:
                raise fail(f"its aliases expand it past {MAX_VALUES:,} values; valid: at most "
                           f"{MAX_VALUES:,}")
            if depth[key] > MAX_DEPTH:
                raise fail(_too_deep)
        elif key in open_:
            raise fail("an alias refers to a list or mapping that contains it; valid: aliases "
                       "to values defined before them")
        elif key not in size:
            open_.add(key)
            stack.append((node, True))
            stack.extend((k, False) for k in children(node))


def _check_values(data, nonfinite: bool, fail) -> None:
    """Walk the parsed tree once: its depth, its number of values, and each number's sense.
    Only containers go on the stack; scalars are checked where they lie, which keeps a walk
    over MAX_VALUES values to a fraction of a second."""
    def check(value, path, key) -> None:
        if isinstance(value, float):
            if not nonfinite and not math.isfinite(value):
                raise fail(f"{_path((path, key))} is {value}; valid: a finite number")
        elif isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            raise fail(f"{_path((path, key))} is an integer of over {MAX_DIGITS} digits; "
                       f"valid: at most {MAX_DIGITS} digits")

    count = 0
    if not isinstance(data, (dict, list)):
        return check(data, None, _WHOLE)
    stack = [(data, 1, None)]
    while stack:
        value, depth, path = stack.pop()  # a container, its depth, its path (parent, key)
        if depth > MAX_DEPTH:
            raise fail(_too_deep)
        count += len(value)
        if count > MAX_VALUES:
            raise fail(f"more than {MAX_VALUES:,} values; valid: at most {MAX_VALUES:,}")
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1, (path, key)))
            elif not isinstance(item, (str, bool)) and item is not None:
                check(item, path, key)


_WHOLE = object()  # the key of a document that is a single number


def _path(path) -> str:
    """`layers[0].Dropout.rate` from the walk's linked (parent, key) path."""
    if path[1] is _WHOLE:
        return "the document"
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    text = ""
    for key in reversed(keys):
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else str(key)
    return clipped(text or "the document", quote=False)
