"""Atomic writes: a reader sees the old or the new content, never a mix; kills are recoverable."""
import os

import pytest

from cnnkit.fsutil import atomic_dir, atomic_write_text, recover_dir


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
