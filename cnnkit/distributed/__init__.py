"""Data-parallel training on PyTorch's own distributed engine (torch.distributed, torchrun).

Two ways in, one run:
- `cnnkit train ... --nproc N` / `cnnkit.run(spec, nproc=N)`: N processes on this machine,
  started by torch's elastic agent (what torchrun runs) from this process (launch.py); rank 0's
  results come back as the same RunResult one process returns.
- `torchrun --nnodes 2 --nproc-per-node 4 --rdzv-endpoint HOST:PORT -m cnnkit train ...`:
  each process torchrun starts finds itself a rank (its environment) and runs as one (rank.py).

Inside a rank, the run is the ordinary one (cnnkit.runs.run) with a few hooks: each rank trains
on its part of every global batch, DDP averages the gradients, evaluation is exact over uneven
shards (shard.py), and only rank 0 writes the run directory and runs the callbacks, its stop
decisions broadcast to the others (group.py). Threads per process: cores / local processes
(cnnkit.train.threads.plan_threads with LOCAL_WORLD_SIZE).

This file stays free of torch imports: `cnnkit.run` asks it first, on every run.
"""
from __future__ import annotations

import os

from cnnkit.errors import CnnkitError, out_of_range


def in_rank(env=os.environ) -> bool:
    """True inside a process started by torchrun / the elastic agent."""
    return "TORCHELASTIC_RUN_ID" in env and "RANK" in env and "WORLD_SIZE" in env


class PeerLost(CnnkitError):
    """Another rank of the run died (or stopped answering): this one cannot go on."""


def check_nproc(nproc) -> None:
    if nproc is not None and (isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1):
        raise out_of_range("nproc", nproc, "an integer >= 1 (processes on this machine)")


def _check_nproc_fits(nproc: int, spec) -> None:
    """One process per GPU on CUDA, per CPU on the CPU."""
    from cnnkit.train.cpus import check_count

    if spec.device in (None, "auto", "cuda") or str(spec.device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            check_count("nproc", nproc, torch.cuda.device_count(), "GPUs")
            return
    check_count("nproc", nproc)


def check_sync_bn(spec) -> None:
    """torch's SyncBatchNorm runs on GPUs only (DDP refuses it on CPU modules)."""
    if not spec.sync_bn:
        return
    import torch

    if spec.device == "cpu" or not torch.cuda.is_available():
        raise CnnkitError("sync_bn=True needs CUDA: torch's SyncBatchNorm runs only on GPUs; "
                          "on the CPU each process normalizes over its own part of the batch "
                          "(drop sync_bn)", option="sync_bn", value=True)


def parallel_run(spec, resume: bool, command, callbacks, module, nproc):
    """The RunResult of a data-parallel run, or None where the run is one ordinary process.
    A resumed run keeps the number of processes it was trained with unless `nproc` says."""
    check_nproc(nproc)
    if in_rank():
        if nproc is not None:
            raise CnnkitError(f"nproc={nproc} inside a process torchrun started: torchrun starts "
                              "the processes itself (--nproc-per-node); drop nproc / --nproc",
                              option="nproc", value=nproc)
        from cnnkit.distributed.rank import run_rank

        return run_rank(spec, resume, command, callbacks, module)
    if nproc is not None and nproc > 1:
        _check_nproc_fits(nproc, spec)
    if nproc is None and resume and spec.out:
        from cnnkit.io.rundir import RunDir

        nproc = RunDir(spec.out).processes()
    if nproc is None or nproc == 1:
        return None
    from cnnkit.distributed.launch import launch

    return launch(spec, nproc, resume, command, callbacks, module)
