"""Every OS error a careless user can cause ends in one line and exit status 2, with nothing
half-written and what was there before intact.

The conditions are real, not simulated: a full disk and a read-only folder are small tmpfs
mounts, permissions are a 0700 folder of another user's read by root without its
permission-override capabilities, FIFOs are real FIFOs. Creating them needs root (CI runs as
root); where that fails the test fails and says why, rather than testing less.
"""
import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import cnnkit

sys.path.insert(0, str(Path(__file__).parent / "data"))  # the download tests' local server
from _http_server import FileServer  # noqa: E402
from test_download import serve_without_length  # noqa: E402
from cnnkit.cli import main, os_error_line  # noqa: E402
from cnnkit.data import mnist  # noqa: E402
from cnnkit.data.download import download  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--model", "seed003-cnn", "--dataset", "digits", "--limit", "300", "--batch-size", "64",
         "--seed", "0", "--quiet"]


# -- real conditions --------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m"):
    """A small file system of its own at `path`, unmounted whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.fail(f"cannot mount a tmpfs at {path} ({r.stderr.strip() or r.returncode}): "
                    "these tests make a full disk and a read-only folder for real, which needs "
                    "root with CAP_SYS_ADMIN (CI runs as root)", pytrace=False)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(fs: Path, leave: int = 0) -> bytes:
    """Take `fs`'s free space but about `leave` bytes with a file of the user's own; returns
    the file's first bytes, to check it is untouched later."""
    head = os.urandom(4096)
    with open(fs / "users-own-file", "wb") as f:
        f.write(head)
        with contextlib.suppress(OSError):  # ENOSPC: full, as wanted
            while shutil.disk_usage(fs).free > leave:
                f.write(bytes(min(1 << 16, shutil.disk_usage(fs).free - leave) or 1))
                f.flush()
    return head


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@contextlib.contextmanager
def fifo(path: Path):
    """A FIFO at `path` that cannot hang the test: a writer waits on it, so a reader that
    opens it anyway reads an empty file at once (and then fails some other way)."""
    os.mkfifo(path)

    def writer():
        os.close(os.open(path, os.O_WRONLY))  # returns once someone opens it to read

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        yield path
    finally:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # release the writer if nobody did
        t.join()
        os.close(fd)


def cli(capsys, *argv) -> tuple[int, str]:
    """Exit status and stderr of `cnnkit ARGV`; stderr must be exactly one line."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnkit: error: "), err
    return rc, err.removeprefix("cnnkit: error: ").rstrip("\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small trained run (1 epoch on digits): its best/ model serves predict."""
    run = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNKIT_DATA", str(tmp_path_factory.mktemp("cnnkit-data")))
        assert main(["train", *SMALL, "--epochs", "1", "--val-split", "0.2",
                     "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.new("L", (8, 8), 128).save(path)
    return path


# -- where a run writes -----------------------------------------------------------------------
def test_out_dev_null_is_refused_and_dev_null_stays(capsys):
    assert cli(capsys, "train", *SMALL, "--epochs", "1", "--out", "/dev/null") == \
        (2, "--out /dev/null is a file, not a directory; choose another --out")
    assert Path("/dev/null").is_char_device()


def test_out_naming_an_existing_file_leaves_it_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    rc, err = cli(capsys, "train", *SMALL, "--epochs", "1", "--out", tmp_path / "notes.txt")
    assert rc == 2 and "notes.txt is a file, not a directory" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_below_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli(capsys, "train", *SMALL, "--epochs", "1", "--out", tmp_path / "notes.txt" / "run") \
        == (2, f"{tmp_path}/notes.txt/run: {tmp_path}/notes.txt is a file, not a folder")


def test_out_in_a_read_only_folder(tmp_path, capsys):
    with tmpfs(tmp_path / "ro") as ro:
        (ro / "keep.txt").write_text("kept")
        read_only(ro)
        assert cli(capsys, "train", *SMALL, "--epochs", "1", "--out", ro / "run") == \
            (2, f"{ro}/run: read-only file system")
        assert entries(ro) == {"keep.txt"} and (ro / "keep.txt").read_text() == "kept"


def test_full_disk_at_config_json(tmp_path, capsys):
    with tmpfs(tmp_path / "full") as fs:
        head = fill(fs, leave=4096)  # one page: the run's lock file takes it
        assert cli(capsys, "train", *SMALL, "--epochs", "1", "--out", fs / "run") == \
            (2, f"{fs}/run/config.json: no space left on device")
        assert entries(fs / "run") <= {".lock"}  # no temporary left
        assert (fs / "users-own-file").read_bytes()[:4096] == head


def test_full_disk_at_the_lock_names_the_run(tmp_path, capsys):
    with tmpfs(tmp_path / "full") as fs:
        head = fill(fs)  # not a page left: the lock file's pid is the first write
        assert cli(capsys, "train", *SMALL, "--epochs", "1", "--out", fs / "run") == \
            (2, f"{fs}/run/.lock: no space left on device")
        assert (fs / "users-own-file").read_bytes()[:4096] == head


def test_full_disk_at_a_checkpoint_keeps_the_run_resumable(trained, tmp_path, capsys):
    with tmpfs(tmp_path / "full", size="4m") as fs:
        run = fs / "run"
        shutil.copytree(trained, run)
        state = (run / "state" / "state.json").read_bytes()
        before = entries(run)
        fill(fs, leave=24 << 10)  # room for config.json and history.csv, not for a model
        rc, err = cli(capsys, "train", "--resume", run, "--epochs", "2", "--quiet")
        assert rc == 2
        assert err.startswith(f"{run}/") and err.endswith(": no space left on device"), err
        assert entries(run) == before  # no half-written state/, best/ or temporary
        assert (run / "state" / "state.json").read_bytes() == state  # epoch 1, resumable


def test_full_disk_at_the_report_keeps_the_old_one(trained, tmp_path, capsys):
    with tmpfs(tmp_path / "full", size="4m") as fs:
        run = fs / "run"
        shutil.copytree(trained, run)
        old = (run / "report.html").read_bytes()
        before = entries(run)
        fill(fs, leave=16 << 10)
        assert cli(capsys, "report", run) == (2, f"{run}/report.html: no space left on device")
        assert entries(run) == before and (run / "report.html").read_bytes() == old


def test_writers_remove_their_temporaries_on_a_full_disk(tmp_path):
    from cnnkit.fsutil import atomic_dir, atomic_path, atomic_write_bytes

    with tmpfs(tmp_path / "full", size="256k") as fs:
        atomic_write_bytes(fs / "a.bin", b"old")
        with atomic_dir(fs / "model") as tmp:
            (tmp / "w").write_text("old")
        fill(fs)
        with pytest.raises(OSError) as e:
            atomic_write_bytes(fs / "a.bin", os.urandom(1 << 20))
        assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(fs / "a.bin"))
        with pytest.raises(OSError) as e:
            with atomic_path(fs / "a.bin") as tmp:
                tmp.write_bytes(os.urandom(1 << 20))
        assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(fs / "a.bin"))
        with pytest.raises(OSError) as e:
            with atomic_dir(fs / "model") as tmp:
                (tmp / "w").write_bytes(os.urandom(1 << 20))
        assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(fs / "model"))
        assert entries(fs) == {"a.bin", "model", "users-own-file"}
        assert (fs / "a.bin").read_bytes() == b"old" and (fs / "model" / "w").read_text() == "old"


# -- downloads --------------------------------------------------------------------------------
BODY = os.urandom(3 << 20)
SHA = hashlib.sha256(BODY).hexdigest()
FIRST = "train-images-idx3-ubyte.gz"


@pytest.fixture
def mirror(monkeypatch):
    """mnist's catalogue entry pointed at a local server whose first file is BODY; returns
    (server, set_size) where set_size(n) sets the size the catalogue publishes for it."""
    with FileServer({FIRST: BODY}) as srv:
        spec = mnist.MNIST_FAMILY["mnist"]

        def set_size(n: int) -> None:
            files = (mnist.RemoteFile(FIRST, SHA, n), *spec.files[1:])
            monkeypatch.setitem(mnist.MNIST_FAMILY, "mnist",
                                dataclasses.replace(spec, mirrors=(srv.base,), files=files))
        yield srv, set_size


def test_download_larger_than_its_published_size_is_refused(mirror, capsys):
    srv, set_size = mirror
    set_size(len(BODY) // 2)
    rc, err = cli(capsys, "data", "show", "mnist")
    assert rc == 2
    assert f"cannot download mnist: {FIRST}: 127.0.0.1:{srv.port}: serves 3.1 MB, more than " \
           "the published 1.6 MB" in err
    assert list((mnist.cache_dir() / "mnist").iterdir()) == []  # no .part: nothing was written


def test_download_that_cannot_fit_is_refused_before_writing(mirror, tmp_path, monkeypatch, capsys):
    srv, set_size = mirror
    set_size(len(BODY))
    with tmpfs(tmp_path / "cache") as fs:
        monkeypatch.setenv("CNNKIT_DATA", str(fs))
        rc, err = cli(capsys, "data", "show", "mnist")
        assert rc == 2
        assert err.startswith(f"not enough space to download {FIRST} into {fs}/mnist: it needs "
                              "3.1 MB, 1.0 MB free; free some space or set CNNKIT_DATA"), err
        assert list((fs / "mnist").iterdir()) == []


def test_disk_filling_up_during_a_download_keeps_the_part_to_resume(tmp_path):
    with serve_without_length(BODY) as url, tmpfs(tmp_path / "cache") as fs:
        with pytest.raises(OSError) as e:  # no size known: nothing to check beforehand
            download([url, url], fs / "data.bin", SHA, progress=False)
        part = fs / "data.bin.part"
        assert os_error_line(e.value) == f"{part}: no space left on device"
        assert entries(fs) == {"data.bin.part"} and BODY.startswith(part.read_bytes())


# -- permissions --------------------------------------------------------------------------------
CHILD = r"""
import contextlib, io, json, sys, traceback
from cnnkit.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except BaseException:
            rc, err = None, io.StringIO(traceback.format_exc())
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def as_an_ordinary_user(cases: list[list[str]]) -> list[tuple[int, str]]:
    """Run `cnnkit` on each argv in one child process that permission bits apply to. Root
    ignores them, and the nobody user cannot run this interpreter (it lives under /root,
    0700): so root runs it without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, the two
    capabilities that bypass them."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to drop root's permission override; "
                        "apt-get install util-linux", pytrace=False)
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]
    r = subprocess.run([*prefix, sys.executable, "-c", CHILD, json.dumps(cases)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [tuple(x) for x in json.loads(r.stdout)]


def test_permission_denied_is_one_line(trained, image, tmp_path):
    theirs = tmp_path / "theirs"  # another user's private folder
    theirs.mkdir()
    shutil.copy(image, theirs / "digit.png")
    private = tmp_path / "private.png"  # a readable folder, an unreadable file
    shutil.copy(image, private)
    try:
        for p, mode in ((theirs, 0o700), (private, 0o600)):
            if os.geteuid() == 0:
                os.chown(p, 65534, 65534)  # nobody
            else:
                mode = 0
            p.chmod(mode)
        results = as_an_ordinary_user([
            ["train", *SMALL, "--epochs", "1", "--out", str(theirs / "run")],
            ["predict", str(trained), str(theirs / "digit.png")],
            ["predict", str(trained), str(private)],
            ["evaluate", str(theirs / "run")],
            ["data", "show", f"folder:{theirs}"],
        ])
    finally:
        theirs.chmod(0o700)
        private.chmod(0o600)
    assert [rc for rc, _ in results] == [2] * 5, results
    assert [err.count("\n") for _, err in results] == [1] * 5, results
    lines = [err.removeprefix("cnnkit: error: ").rstrip("\n") for _, err in results]
    assert lines[:4] == [f"{theirs}/run: permission denied",
                         f"{theirs}/digit.png: permission denied",
                         f"image file '{private}': permission denied",
                         f"{theirs}/run: permission denied"]
    assert str(theirs) in lines[4] and "permission denied" in lines[4].lower()


# -- names and kinds of files ---------------------------------------------------------------
def test_file_names_that_are_not_utf8(trained, image, tmp_path, capsys):
    folder = tmp_path / "named"
    name = os.fsdecode(b"\xff.png")  # what Python makes of a Latin-1 file name
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            shutil.copy(image, folder / cls / f"{i}.png")
        shutil.copy(image, folder / cls / name)
    # a strict stdout (a UTF-8 locale other than C.UTF-8) must not crash on the name
    r = subprocess.run([sys.executable, "-m", "cnnkit", "predict", str(trained),
                        str(folder / "a" / name)], cwd=ROOT, capture_output=True,
                       env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    # the byte that is not UTF-8 shown as \xff, as in error lines (cnnkit.errors.printable)
    assert r.stdout.startswith(f"{folder}/a/\\xff.png: ".encode())
    assert cli(capsys, "predict", trained, folder / os.fsdecode(b"\xfe.png")) == \
        (2, f"{folder}/\\xfe.png: no such file or folder")
    capsys.readouterr()
    assert main(["data", "show", f"folder:{folder}"]) == 0  # an image folder holding such names
    assert "cnnkit: error" not in capsys.readouterr().err


# (what is at PATH, the command given PATH, what it says); {p} is PATH. `run` is a trained run,
# `img` a readable image.
@pytest.mark.parametrize("make, argv, expected", [
    pytest.param("fifo", ["predict", "run", "{p}"],
                 "'{p}' is a FIFO (named pipe), not an image file", id="fifo-image"),
    pytest.param("fifo", ["summary", "{p}.yaml"],
                 "'{p}.yaml' is a FIFO (named pipe), not a model file", id="fifo-model-file"),
    pytest.param("fifo", ["data", "show", "npz:{p}.npz"],
                 "'{p}.npz' is a FIFO (named pipe), not an npz file", id="fifo-npz"),
    pytest.param("folder", ["predict", "run", "img", "--plot", "{p}.png"],
                 "--plot {p}.png is a folder, not a file; choose another --plot", id="folder-plot"),
    pytest.param("folder", ["data", "show", "npz:{p}.npz"],
                 "'{p}.npz' is a folder, not an npz file", id="folder-npz"),
    pytest.param("folder", ["train", "--config", "{p}.yaml"],
                 "'{p}.yaml' is a folder, not a run file", id="folder-config"),
    pytest.param("file", ["evaluate", "{p}"],
                 "{p}: is a file, not a run or saved model directory", id="file-evaluate"),
    pytest.param("file", ["evaluate", "run", "--out", "{p}"],
                 "--out {p} is a file, not a folder; choose another --out", id="file-out"),
    pytest.param(None, ["predict", "run", "{p}.png"], "{p}.png: no such file or folder",
                 id="missing-image"),
    pytest.param(None, ["evaluate", "{p}"], "{p}: no such run or saved model directory",
                 id="missing-evaluate"),
])
def test_wrong_kind_of_path(trained, image, tmp_path, capsys, make, argv, expected):
    p = tmp_path / "x"
    args = [a.format(p=p) for a in argv]
    target = tmp_path / Path(next(a for a in args if str(p) in a)).name  # x, x.png, x.npz
    args = [{"run": str(trained), "img": str(image)}.get(a, a) for a in args]
    with contextlib.ExitStack() as stack:
        if make == "fifo":
            stack.enter_context(fifo(target))
        elif make == "folder":
            target.mkdir()
        elif make == "file":
            target.write_text("mine")
        assert cli(capsys, *args) == (2, expected.format(p=p))
    if make == "file":
        assert target.read_text() == "mine"


# -- the rule itself ----------------------------------------------------------------------------
def test_only_the_users_paths_and_disk_are_user_errors(tmp_path):
    own = Path(cnnkit.__file__).parent / "no-such-file.json"
    assert os_error_line(FileNotFoundError(errno.ENOENT, "No such file", str(own))) is None
    assert os_error_line(OSError(errno.EINVAL, "Invalid argument", str(tmp_path))) is None
    assert os_error_line(OSError(errno.EBADF, "Bad file descriptor")) is None
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == \
        "no space left on device"
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", str(tmp_path))) == \
        f"{tmp_path}: permission denied"
