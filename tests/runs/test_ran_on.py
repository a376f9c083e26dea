"""What a run ran on (issue 30, item 5): config.json records the versions, the CPU and its
vector flags, the OS, the git commit of the working directory and a fingerprint of the data;
report.md, report.html and `cnnkit runs` show it."""
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.data import load_dataset
from cnnkit.data.mapped import data_crc, read_cache
from cnnkit.runs.provenance import VECTOR_FLAGS, git_commit

SPEC = dict(model="seed003-cnn", dataset="digits", epochs=1, batch_size=64, seed=1, verbose=0)


def git(repo, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo_run(tmp_path_factory):
    """A run started inside a git repository with one commit, as a project trains."""
    repo = tmp_path_factory.mktemp("project")
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('train')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    here = os.getcwd()
    os.chdir(repo)  # the working directory is what counts, as where `cnnkit train` runs
    try:
        cnnkit.run(cnnkit.RunSpec(out="runs/a", **SPEC))
    finally:
        os.chdir(here)
    return repo, repo / "runs" / "a"


def test_config_records_versions_cpu_os_commit_and_data(repo_run):
    repo, run = repo_run
    rec = json.loads((run / "config.json").read_text())["resolved"]["ran_on"]
    assert rec["cnnkit"] == cnnkit.__version__ and rec["torch"] == torch.__version__
    assert rec["numpy"] == np.__version__ and rec["python"] == platform.python_version()
    assert rec["os"].startswith(platform.system())
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(l.split(":", 1)[1].strip() for l in cpuinfo.splitlines()
                 if l.startswith("model name"))
    flags = set(next(l for l in cpuinfo.splitlines() if l.startswith("flags")).split())
    assert rec["cpu"]["model"] == model
    assert rec["cpu"]["flags"] == [f for f in VECTOR_FLAGS if f in flags] and rec["cpu"]["flags"]
    # the repository's commit, clean: the run's own files are not tracked
    assert rec["git"] == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}
    assert rec["data"] == data_crc(load_dataset("digits"))


def test_a_changed_tracked_file_is_dirty_and_no_repository_is_none(tmp_path, repo_run):
    repo, _ = repo_run
    (repo / "train.py").write_text("print('changed')\n")
    try:
        assert git_commit(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": True}
    finally:
        git(repo, "checkout", "train.py")
    assert git_commit(tmp_path) is None


def test_the_data_fingerprint_follows_the_pixels(tmp_path):
    ds = load_dataset("digits")
    same = load_dataset("digits")
    assert data_crc(ds) == data_crc(same) and data_crc(ds).startswith("crc32:")
    same.x_train = same.x_train.clone()
    same.x_train[5, 3, 3, 0] ^= 1  # one pixel of one image
    assert data_crc(same) != data_crc(ds)
    # a folder mapped from cnnkit's cache: the CRC-32 its header holds, checked on mapping
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 6), 40 * i + (c == "b") * 9, np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    folder = load_dataset(f"folder:{tmp_path / 'imgs'}")
    _, meta = read_cache(folder.info["cache"])
    assert data_crc(folder) == f"crc32:{meta['crc32']}"


def test_reports_and_the_runs_table_show_it(repo_run, capsys):
    repo, run = repo_run
    commit = git(repo, "rev-parse", "HEAD")
    md = (run / "report.md").read_text()
    line = next(l for l in md.splitlines() if l.startswith("- ran on: "))
    assert f"torch {torch.__version__}" in line and f"git {commit[:12]}" in line
    assert "crc32:" in line and ("avx" in line or "asimd" in line)
    assert f"git {commit[:12]}" in (run / "report.html").read_text()
    assert main(["runs", str(run.parent)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[-2:] == ["ran", "on"]
    assert row.endswith(f"torch {torch.__version__}, {commit[:7]}, "
                        f"{data_crc(load_dataset('digits')).removeprefix('crc32:')}")
    assert main(["runs", str(run.parent), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"][0]
    assert listed["ran_on"] == row.split("  ")[-1].strip()
