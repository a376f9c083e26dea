"""Waiting on what a child process says (a line it prints), never on the clock."""
from __future__ import annotations

import os
import select
import subprocess
import time


def wait_for_line(proc: subprocess.Popen, line: str, timeout: float = 120) -> bool:
    """Read the child's stdout (a pipe) until it prints `line`: True. False when it exits
    first, or says nothing of the kind in `timeout` seconds: a deadline against a hung child,
    far beyond any real wait, so it decides nothing about speed."""
    fd, want = proc.stdout.fileno(), line.encode()
    deadline = time.monotonic() + timeout
    said = b""
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            return False
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # end of file: the child has exited
            return False
        said += chunk
        if want in said.split(b"\n")[:-1]:  # whole lines only
            return True
    return False


def pause_after_epoch(epoch: int) -> str:
    """A `python -c` script: `cnnkit train` (its argv), but once epoch `epoch`'s state is
    written it prints "saved epoch N" and holds still, holding its run directory, until the
    test kills it."""
    return f"""
import sys, threading
from cnnkit.cli import main
from cnnkit.train.trainer import Trainer

save_state = Trainer.save_state
def save_then_pause(self, directory):
    path = save_state(self, directory)
    if self.epoch == {epoch}:
        print("saved epoch {epoch}", flush=True)
        threading.Event().wait()
    return path
Trainer.save_state = save_then_pause
sys.exit(main(sys.argv[1:]))
"""
