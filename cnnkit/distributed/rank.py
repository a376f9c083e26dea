"""One rank's run: agree on the spec with rank 0, then the ordinary run with its hooks.

Rank 0 resolves the spec (the seed it picks, a resumed run's own options read from its
config.json, which the other ranks may not have on their machines) and checks the run
directory; the result, or rank 0's one-line error, is broadcast, so every rank trains the same
run or stops with the same message.
"""
from __future__ import annotations

import json

import torch.distributed as dist

from cnnkit.distributed import PeerLost, check_sync_bn
from cnnkit.distributed.group import Parallel
from cnnkit.errors import CnnkitError


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return None


# What a collective says when the rank at the other end is gone (gloo's and NCCL's words; DDP's
# all-reduce in backward raises them as plain RuntimeErrors, not as torch's DistError).
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
             "gloo/transport", "NCCL communicator", "Socket Timeout", "timed out")


def peer_lost(e: BaseException) -> bool:
    return isinstance(e, dist.DistError) or (isinstance(e, RuntimeError)
                                             and any(s in str(e) for s in PEER_LOST))


def run_rank(spec, resume: bool, command, callbacks, module):
    from cnnkit.runs.run import execute_run, resolve_run
    from cnnkit.io.rundir import RunDir
    from cnnkit.runs.spec import RunSpec

    if module is not None:
        raise CnnkitError("your own nn.Module trains in one process; data-parallel runs "
                          "(torchrun, nproc) take cnnkit's models: a preset, a model file or a "
                          "description")
    from cnnkit.train.device import resolve_device

    par = Parallel.from_env()
    par.start(resolve_device(spec.device or "auto").type)  # cuda without a GPU: one line
    try:
        msg = None
        if par.rank == 0:
            try:
                resolved = resolve_run(spec, resume)
                if not resume and resolved.out is not None and resolved.artifacts != "none":
                    RunDir(resolved.out).check_fresh()
                check_sync_bn(resolved)
                msg = {"spec": resolved.to_dict()}
            except CnnkitError as e:
                msg = {"error": str(e), "option": e.option, "value": _jsonable(e.value)}
        msg = par.broadcast_json(msg)
        if "error" in msg:
            raise CnnkitError(msg["error"], msg["option"], msg["value"])
        spec = RunSpec(**msg["spec"])
        par.sync_bn, par.scale_lr, par.warmup_epochs = (spec.sync_bn, spec.scale_lr,
                                                        spec.warmup_epochs)
        if par.rank:
            spec = spec.replace(verbose=0)  # one progress display: rank 0's
        elif spec.verbose:
            per = spec.batch_size_per_process or f"{spec.batch_size / par.world:g}"
            print(f"Data-parallel: {par.world} processes ({dist.get_backend()}), global batch "
                  f"{(spec.batch_size_per_process or 0) * par.world or spec.batch_size} "
                  f"({per} per process)")
        return execute_run(spec, resume, command, callbacks if par.is_writer else None,
                        parallel=par)
    except RuntimeError as e:
        if not peer_lost(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PeerLost(f"{par.describe()} lost the other processes ({first[:200]})") from None
    finally:
        par.close()
