"""Bounded reading of Keras files' containers: the `.keras` zip and its members, the JSON they
hold, and HDF5 weight datasets (cnnkit.model.keras_files maps what they describe to cnnkit).

A Keras file is a user's file, and its headers can lie: a zip member of a few kilobytes can
declare gigabytes (a "zip bomb"), an HDF5 dataset of no stored bytes can claim terabytes, and a
config can ask for a model far larger than the weights the file holds. So every size is checked
before anything is allocated or parsed, and everything malformed is one CnnkitError line:

    config.json, cnnkit.json and model_config: at most cnnkit.io.bounded.MAX_BYTES, parsed by
        its bounded parser (nesting depth, number of values)
    a zip member over BOMB_FLOOR bytes that expands more than MAX_EXPANSION times its stored
        size (Keras and cnnkit store members uncompressed; deflate tops out near 1,000×)
    a model whose parameters need more bytes (at 2 bytes each, float16's) than its weights file
        holds: the file cannot be honest, and building the model would allocate the difference
    a weight dataset whose name is not a number, that is not a dataset, or holds no numbers;
        its shape is compared with the layer's before a byte of it is read
"""
from __future__ import annotations

import contextlib
import zipfile
import zlib
from pathlib import Path

from cnnkit.errors import CnnkitError, clipped
from cnnkit.io.bounded import MAX_BYTES, parse_bounded

BOMB_FLOOR = 16 * 2**20
MAX_EXPANSION = 100
WEIGHTS = "model.weights.h5"
_SLACK = 2**20  # HDF5's own headers and a few attributes: a tiny model's file is mostly these
_DAMAGED = (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError, OSError, ValueError)


def read_member(z: zipfile.ZipFile, name: str, where, limit: int | None = None) -> bytes:
    """The bytes of member `name`, its declared size checked first (at most `limit` bytes, or
    any size that is not a decompression bomb)."""
    info = z.getinfo(name)
    if info.flag_bits & 0x1:
        raise CnnkitError(f"{where}: {name} is encrypted; valid: a .keras file as Keras saves it")
    if limit is not None and info.file_size > limit:
        raise CnnkitError(f"{where}: {name} declares {info.file_size:,} bytes; valid: at most "
                          f"{limit:,}")
    if info.file_size > BOMB_FLOOR and info.file_size > MAX_EXPANSION * info.compress_size:
        raise CnnkitError(f"{where}: {name} declares {info.file_size:,} bytes but stores "
                          f"{info.compress_size:,} (a decompression bomb); valid: members that "
                          f"expand at most {MAX_EXPANSION}×")
    try:
        with z.open(info) as f:
            return f.read(info.file_size)  # never more than declared, whatever the stream holds
    except _DAMAGED as e:
        raise CnnkitError(f"{where}: {name} is damaged ({clipped(e, quote=False)})") from None


def open_zip(path: Path) -> tuple[zipfile.ZipFile, list[str]]:
    """The .keras archive and its member names; one line when it is not one."""
    try:
        z = zipfile.ZipFile(path)
        return z, z.namelist()
    except _DAMAGED:
        raise CnnkitError(f"{path}: not a .keras file (a zip holding config.json and "
                          f"{WEIGHTS})") from None


def parse_json(data, where: str):
    """A JSON document held in a file (bytes or str), within cnnkit.io.bounded's limits."""
    if not isinstance(data, (bytes, str)):  # an HDF5 attribute can hold any type
        raise CnnkitError(f"{where}: holds {type(data).__name__}, not JSON text")
    if len(data) > MAX_BYTES:
        raise CnnkitError(f"{where}: {len(data):,} bytes of JSON; valid: at most {MAX_BYTES:,}")
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return parse_bounded(data, "json", where, label="corrupt JSON")


def open_h5(source, where, problem="not an HDF5 file h5py can read"):
    """h5py.File(source) for reading (a path or a file object); one line if h5py cannot."""
    h5py = h5py_module()
    try:
        return h5py.File(source, "r")
    except OSError as e:
        raise CnnkitError(f"{where}: {problem} ({clipped(e, quote=False)})") from None


H5_SECONDS = 10.0  # for reading a weights file's whole structure, plus 1 s per 32 MiB of it


def probe_h5(source, where, size: int) -> None:
    """Walk every attribute and dataset of an HDF5 file (a path or a file object) in a forked
    child first, within H5_SECONDS: some damaged files make libhdf5 itself spin in C (an
    attribute message whose size loops), where no Python signal or thread can stop it, so the
    read that would hang this process hangs a child that is then killed: one line. A child
    that finishes (or fails: the read here then says why in its own line) lets the real read
    go on. Where there is no fork (Windows), the file is read unguarded."""
    import os
    import signal
    import warnings

    if not hasattr(os, "fork"):
        return
    deadline = H5_SECONDS + size / 2**25
    with warnings.catch_warnings():  # 3.12+: a fork beside threads; the child runs h5py only
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: read, and leave without running the parent's exit handlers
        code = 1
        try:
            _walk_h5(source, size)
            code = 0
        finally:
            os._exit(code)
    if _ended(pid, deadline):
        return
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise CnnkitError(f"{where}: damaged HDF5 file: reading its structure did not finish in "
                      f"{deadline:.0f} s (libhdf5 loops on it); valid: a weights file as Keras "
                      "or cnnkit saves it")


def _ended(pid: int, deadline: float) -> bool:
    """Whether child `pid` ended (and was reaped) within `deadline` seconds."""
    import os
    import select
    import time

    try:  # Linux: woken the moment it ends
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [], deadline)
        finally:
            os.close(fd)
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    start, pause = time.monotonic(), 0.001
    while time.monotonic() - start < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return False


def _walk_h5(source, size: int) -> None:
    h5py = h5py_module()
    with h5py.File(source, "r") as f:
        def visit(obj) -> None:
            for key in obj.attrs:
                obj.attrs.get(key)
            if isinstance(obj, h5py.Dataset) and obj.size * obj.dtype.itemsize <= 4 * size:
                obj[()]
        visit(f)
        f.visititems(lambda name, obj: visit(obj))


@contextlib.contextmanager
def damaged_h5(where):
    """What h5py raises on a damaged file while it is read (a link it cannot iterate, a chunk
    it cannot decode), as one line."""
    try:
        yield
    except (OSError, RuntimeError, KeyError, UnicodeError) as e:
        # UnicodeError: a name h5py decoded with surrogates for bytes that are not UTF-8, which
        # it cannot encode again to look the name up
        if isinstance(e, KeyError) and "Unable to" not in str(e):  # not HDF5's: a bug of ours
            raise
        raise CnnkitError(f"{where}: damaged HDF5 weights ({clipped(e, quote=False)})") from None


@contextlib.contextmanager
def malformed_config(where):
    """A config of the right JSON but the wrong shape (a layer's inbound_nodes a number, a
    keras_history that is not a list, a shape that is text) fails where cnnkit walks it, as a
    TypeError, KeyError, IndexError or AttributeError: one line naming the file. Checking each
    field ahead would restate Keras's whole config schema; the walk itself is the check."""
    try:
        yield
    except CnnkitError as e:  # a layer's own check: named after the file as well
        if str(e).startswith(str(where)):
            raise
        raise CnnkitError(f"{where}: {e}") from None
    except (TypeError, KeyError, IndexError, AttributeError) as e:
        raise CnnkitError(f"{where}: malformed model config ({type(e).__name__}: "
                          f"{clipped(e, quote=False)})") from None


def h5py_module():
    try:
        import h5py
    except ImportError:
        raise CnnkitError("reading and writing Keras files needs h5py: pip install h5py") from None
    return h5py


def check_extras(extras, where: str) -> dict:
    """cnnkit.json's types: class_names a list of names, preprocessing a mapping, dataset a
    name (its values are checked where they are used)."""
    if not isinstance(extras, dict):
        raise CnnkitError(f"{where}: a {type(extras).__name__}; valid: a mapping")
    names = extras.get("class_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(n, str) for n in names)):
        raise CnnkitError(f"{where}: class_names={clipped(names)}; valid: a list of names")
    for key, kind in (("preprocessing", dict), ("dataset", str)):
        value = extras.get(key)
        if value is not None and not isinstance(value, kind):
            raise CnnkitError(f"{where}: {key}={clipped(value)}; valid: "
                              f"{'a mapping' if kind is dict else 'a name'}")
    return extras


def check_weights_fit(model, stored: int, where) -> None:
    """Refuse a model whose parameters cannot be in `stored` bytes of weights, before it is
    built (building allocates them)."""
    params = sum(row.params for row in model.layer_infos())
    if params * 2 > stored + _SLACK:
        raise CnnkitError(f"{where}: the model has {params:,} parameters ({params * 4 / 2**30:.1f}"
                          f" GiB as float32) but its weights file holds {stored:,} bytes; valid: "
                          "a file holding its model's weights")


def datasets(group, where: str) -> list:
    """The datasets of a Keras 3 `vars` group, in order, unread: their names are 0, 1, 2..."""
    import h5py

    names = list(group)
    odd = [n for n in names if not (n.isdigit() and isinstance(group.get(n), h5py.Dataset))]
    if odd:
        raise CnnkitError(f"{where}: weight {clipped(odd[0])} is not a numbered dataset; valid: "
                          "datasets named 0, 1, 2...")
    return [numeric(group[n], where) for n in sorted(names, key=int)]


def numeric(dataset, where: str):
    """`dataset` itself, once its type is known to be numbers (read later, after its shape)."""
    import h5py

    if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind not in "biuf":
        raise CnnkitError(f"{where}: weight {clipped(dataset.name)} holds "
                          f"{getattr(dataset, 'dtype', 'a group')}; valid: numbers")
    return dataset
