"""`cnnkit.run(spec, nproc=N)`: N ranks on this machine, started by torch's elastic agent.

The agent is torchrun's own (torch.distributed.launcher.api.elastic_launch): a c10d rendezvous
on 127.0.0.1, workers watched every 0.1 s, and when one dies the others are stopped at once,
so a killed rank fails the whole run within a second or two instead of leaving the rest
waiting in an all-reduce. The ranks are fresh interpreters (`python -m cnnkit.distributed.worker
JOB`), not forks or pickled functions: a notebook or a test calls this like any function.

State comes back to the caller (unlike spawn-based launchers, Lightning #16780): rank 0 writes
the RunResult's parts (metrics, history, report, the saved model) to the job directory, and
they are read back here. A failure becomes one line: rank 0's own error, or which rank died
how, and where the run can be resumed from.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

from cnnkit.distributed import check_sync_bn
from cnnkit.errors import CnnkitError

WORKER = "cnnkit.distributed.worker"
JOB_ENV = "CNNKIT_RANK_JOB"  # where a rank finds its job file
RESULT, ERROR, MODEL = "result.json", "error.json", "model"
EXIT_ERROR, EXIT_PEER_LOST = 2, 3  # a worker's exit codes for "said why" and "another died"
MONITOR_S = 0.1  # how often the agent looks at its workers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _quiet_agent():
    """The agent's own log lines (start-up, 'Sending process N closing signal', its failure
    table) stay out of the run's output: the run says what happened in its own line."""
    names = ("torch.distributed.elastic", "torch.distributed.launcher")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def launch(spec, nproc: int, resume: bool, command, callbacks, module):
    from cnnkit.io.rundir import RunDir

    if module is not None:
        raise CnnkitError(f"nproc={nproc} trains cnnkit's models (a preset, a model file or a "
                          "description); your own nn.Module trains in one process (nproc=1)",
                          option="nproc", value=nproc)
    if callbacks:
        raise CnnkitError(f"callbacks cannot travel to the {nproc} processes nproc starts; "
                          "valid: run(spec, nproc=N) without callbacks, or your own script "
                          "under torchrun calling cnnkit.run(spec, callbacks=...)")
    from cnnkit.train.device import resolve_device

    resolve_device(spec.device or "auto")  # cuda without a GPU: said once, not by N processes
    if not resume:  # every value checked, and the seed chosen, before N processes start
        spec = spec.resolved()
        if spec.out is not None and spec.artifacts != "none":
            RunDir(spec.out).check_fresh()
        check_sync_bn(spec)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="cnnkit-ranks-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"spec": spec.to_dict(), "resume": resume,
                                   "command": command}))
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                              run_id=f"cnnkit-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d",
                              rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=0,
                              monitor_interval=MONITOR_S)
        try:
            with _quiet_agent(), _job_in_environment(job):
                elastic_launch(config, sys.executable)("-u", "-m", WORKER)
        except ChildFailedError as e:
            raise _failure(e, Path(tmp), spec, nproc) from None
        return read_result(Path(tmp))


@contextlib.contextmanager
def _job_in_environment(job: Path):
    """The ranks find their job file in JOB_ENV (the agent's environment is theirs): an
    internal hand-over, not a command line."""
    before = os.environ.get(JOB_ENV)
    os.environ[JOB_ENV] = str(job)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(JOB_ENV, None)
        else:
            os.environ[JOB_ENV] = before


def read_result(tmp: Path):
    from cnnkit.model.saving import load
    from cnnkit.runs.spec import RunResult, RunSpec

    d = json.loads((tmp / RESULT).read_text())
    return RunResult(spec=RunSpec(**d["spec"]), metrics=d["metrics"], history=d["history"],
                     model=load(tmp / MODEL), report=d["report"],
                     run_dir=Path(d["run_dir"]) if d["run_dir"] else None)


def _failure(e, tmp: Path, spec, nproc: int) -> Exception:
    """The one line a failed run ends with."""
    if (tmp / ERROR).is_file():  # rank 0 said what was wrong (a CnnkitError)
        d = json.loads((tmp / ERROR).read_text())
        return CnnkitError(d["error"], d.get("option"), d.get("value"))

    def cause(item):  # a kill, a crash, then SIGTERM (the agent stopping the others), then
        f = item[1]  # a rank that only said it lost the others
        if f.exitcode < 0:
            return (2 if f.signal_name() == "SIGTERM" else 0, item[0])
        return (3 if f.exitcode in (EXIT_ERROR, EXIT_PEER_LOST) else 1, item[0])

    rank, f = min(e.failures.items(), key=cause)
    how = (f"was killed by {f.signal_name()}" if f.exitcode < 0
           else f"exited with code {f.exitcode}")
    line = f"rank {rank} of {nproc} (pid {f.pid}) {how}; the other processes were stopped"
    out = spec.out if spec.artifacts != "none" else None
    from cnnkit.io.rundir import RunDir

    epoch = RunDir(out).saved_epoch() if out else None
    if out is None:
        line += "; nothing was saved (the run had no out)"
    elif epoch:
        line += (f"; {out} holds the run up to epoch {epoch}: continue it with cnnkit train "
                 f"--resume {out} (cnnkit.resume)")
    else:
        line += f"; {out} has no completed epoch: the same command starts it afresh"
    if f.exitcode > 0 and f.exitcode not in (EXIT_ERROR, EXIT_PEER_LOST):
        return RuntimeError(line + " (its traceback is above)")  # a bug: it keeps its trace
    return CnnkitError(line)
