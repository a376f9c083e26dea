"""Shared by the search tests: a tiny search space on sklearn's digits, a real `cnnkit tune`
child process that can be paused mid-trial, and a real PostgreSQL server on 127.0.0.1."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

# One torch thread, here and in every child: these tests run beside other engineers' on two
# shared cores, where torch's spinning OpenMP workers make a tiny model 30x slower.
os.environ["OMP_NUM_THREADS"] = "1"
import torch  # noqa: E402

torch.set_num_threads(1)

TINY = {"input_shape": [8, 8, 1], "layers": [
    {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
    {"Dense": {"units": 10, "activation": "softmax"}}]}
BASE = {"model": TINY, "dataset": "digits", "epochs": 2, "batch_size": 64}


def write_space(path: Path, space: dict, base: dict | None = None, **objective) -> Path:
    doc = {"base": {**BASE, **(base or {})}, "space": space,
           "objective": objective or {"metric": "val_accuracy", "direction": "maximize"}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # the space's order is the draws'
    return path


def pause_in_trial(trial_dir_suffix: str, epoch: int) -> str:
    """A `python -c` script: `cnnkit` (its argv), but once the trial whose run directory ends
    in `trial_dir_suffix` has saved epoch `epoch`'s state, it prints "paused" and holds still
    (its heartbeat thread still beating) until the test kills it."""
    return f"""
import sys, threading
from cnnkit.cli import main
from cnnkit.train.trainer import Trainer

save_state = Trainer.save_state
def save_then_pause(self, directory):
    path = save_state(self, directory)
    if str(directory).endswith({trial_dir_suffix + '/state'!r}) and self.epoch == {epoch}:
        print("paused", flush=True)
        threading.Event().wait()
    return path
Trainer.save_state = save_then_pause
sys.exit(main(sys.argv[1:]))
"""


def cnnkit_child(*argv, script: str | None = None) -> subprocess.Popen:
    code = script or "import sys; from cnnkit.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _pg_bin() -> Path | None:
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(found).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server of its own, started from Debian's `postgresql` binaries on a free
    port of 127.0.0.1 with trust authentication, and stopped at the end. Missing binaries fail
    the tests (they are the multi-machine path): install Debian's postgresql package."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                    "/usr/lib/postgresql/*/bin or on PATH: install Debian's `postgresql` "
                    "package (apt-get install postgresql) to test --storage postgresql://",
                    pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="cnnkit-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as `postgres`
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--clear-groups"]
    data, port = root / "data", _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres", "--no-sync", "-E", "UTF8"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                    "-o", f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "-w", "start"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
