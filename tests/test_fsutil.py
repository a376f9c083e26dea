"""Atomic writes: a reader sees the old or the new content, never a mix; kills are recoverable;
what lands has the permissions the umask gives any other tool's output."""
import errno
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import (atomic_dir, atomic_path, atomic_write_bytes, atomic_write_json,
                           atomic_write_text, readable_file, recover_dir)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_directory_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "w").write_text("half")
            raise RuntimeError("killed")
    assert (target / "w").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_recover_dir_after_a_kill_between_the_two_renames(tmp_path):
    target = tmp_path / "state"
    with atomic_dir(target) as tmp:
        (tmp / "s").write_text("epoch 3")
    os.replace(target, tmp_path / ".state.old")  # what a kill between the renames leaves
    recover_dir(target)
    assert (target / "s").read_text() == "epoch 3"
    recover_dir(target)  # nothing to do: harmless
    assert (target / "s").read_text() == "epoch 3"


@pytest.fixture
def umask(request):
    """Run the test under umask `request.param`, restoring the caller's afterwards."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, file_mode, dir_mode",
                         [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)], indirect=["umask"],
                         ids=["umask-022", "umask-077"])
def test_written_files_and_directories_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    atomic_write_bytes(tmp_path / "a.bin", b"a")
    atomic_write_text(tmp_path / "b.txt", "b")
    atomic_write_json(tmp_path / "c.json", {"c": 1})
    with atomic_path(tmp_path / "d.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    with atomic_dir(tmp_path / "model") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
        (tmp / "model.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "e.txt").write_text("e")
    with atomic_dir(tmp_path / "model") as tmp:  # replacing an existing directory too
        (tmp / "model.json").write_text("{}")
    atomic_write_text(tmp_path / "new" / "deeper" / "f.txt", "f")  # parents it creates
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    dirs = sorted(p for p in tmp_path.rglob("*") if p.is_dir())
    assert len(files) == 6 and len(dirs) == 3
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files} == \
        {str(p.relative_to(tmp_path)): oct(file_mode) for p in files}
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in dirs} == \
        {str(p.relative_to(tmp_path)): oct(dir_mode) for p in dirs}


@pytest.mark.parametrize("umask", [0o022], indirect=True, ids=["umask-022"])
def test_a_trained_run_is_readable_by_others_under_umask_022(tmp_path, umask):
    from cnnkit.cli import main

    run = tmp_path / "run"
    assert main(["train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", "1",
                 "--batch-size", "64", "--seed", "1", "--quiet", "--out", str(run)]) == 0
    found = [run, *run.rglob("*")]
    assert any(p.name == "model.safetensors" for p in found)
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in found
             if mode(p) != (0o755 if p.is_dir() else 0o644)}
    assert wrong == {}


# -- what is at the target's name ----------------------------------------------------------------
def test_a_fifo_or_folder_is_never_replaced_by_a_file(tmp_path):
    # os.replace would put a regular file where the FIFO (or, for root, /dev/null) was
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CnnkitError, match=r"pipe' is a FIFO \(named pipe\), not a file"):
        atomic_write_text(tmp_path / "pipe", "x")
    with pytest.raises(CnnkitError, match=r"folder' is a folder, not a file"):
        with atomic_path(tmp_path / "folder") as tmp:
            tmp.write_text("x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode) and (tmp_path / "folder").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "pipe"]  # no temporary


def test_a_file_is_never_replaced_by_a_folder(tmp_path):
    (tmp_path / "model").write_text("mine")
    with pytest.raises(CnnkitError, match=r"model' is a file, not a folder; choose another path"):
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "w").write_text("x")
    assert (tmp_path / "model").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_readable_file_names_what_is_there_instead(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    os.mkfifo(tmp_path / "pipe.png")  # only stat'ed: reading it would wait for a writer
    assert readable_file(tmp_path / "a.png", "image file") == tmp_path / "a.png"
    for name, message in [("missing.png", "image file '.*missing.png' does not exist"),
                          ("dir.png", "dir.png' is a folder, not an image file"),
                          ("pipe.png", r"pipe.png' is a FIFO \(named pipe\), not an image file"),
                          ("a.png/x", "a.png/x': .*a.png is a file, not a folder")]:
        with pytest.raises(CnnkitError, match=message):
            readable_file(tmp_path / name, "image file")


def test_a_writers_os_error_names_the_target_not_the_temporary(tmp_path):
    with pytest.raises(OSError) as e:
        with atomic_path(tmp_path / "plot.png") as tmp:
            raise OSError(errno.EIO, "Input/output error")  # f.write names no file
    assert (e.value.errno, e.value.filename) == (errno.EIO, str(tmp_path / "plot.png"))
    with pytest.raises(OSError) as e:
        with atomic_dir(tmp_path / "model") as tmp:
            save_file({"w": torch.zeros(1)}, str(tmp / "missing" / "w.safetensors"))
    assert e.value.errno == errno.ENOENT and e.value.filename == str(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


WRITER = """
import sys, time
from cnnkit.fsutil import atomic_dir, atomic_path
target, kind = sys.argv[1], sys.argv[2]
with (atomic_path if kind == "file" else atomic_dir)(target) as tmp:
    if kind == "file":
        open(tmp, "wb").write(b"half an onnx")
    else:
        (tmp / "weights").write_bytes(b"half")
    print(tmp.name, flush=True)
    time.sleep(60)  # killed here, mid-write
"""


def _writer(target, kind: str):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), kind],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.mark.parametrize("kind, name", [("file", "x.onnx"), ("dir", "model")])
def test_a_temporary_left_by_a_killed_writer_is_gone_after_the_next_write(tmp_path, kind, name):
    import signal

    target = tmp_path / name
    killed, stale = _writer(target, kind)
    alive, kept = _writer(target, kind)  # another writer, still running
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    assert (tmp_path / stale).exists()  # what kill -9 leaves
    try:
        if kind == "file":  # as `cnnkit export` writes its .onnx
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"the whole onnx")
        else:
            with atomic_dir(target) as tmp:
                (tmp / "weights").write_bytes(b"whole")
        left = sorted(p.name for p in tmp_path.iterdir())
    finally:
        alive.kill()
        alive.wait(10)

    assert stale.startswith(f".{target.stem}.{killed.pid}-")
    assert left == sorted([name, kept])  # the running writer's own temporary is left alone
