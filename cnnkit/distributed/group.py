"""One rank of a data-parallel run: who it is (torchrun's environment), its process group, and
the few collectives the run needs.

Every rank is started by PyTorch's elastic agent (`torchrun`, or `cnnkit train --nproc N`, which
runs the same agent in-process), which sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and
MASTER_ADDR/PORT. The process group is gloo on CPU and NCCL on CUDA (one GPU per local rank).

What travels between ranks, and why each is a broadcast from rank 0: the resolved RunSpec (the
seed a rank would pick for itself differs), a resumed run's training state (only rank 0 may
read the run directory: on several machines the others have none), and each epoch's stop
decision (callbacks that decide act on rank 0 alone). Bytes travel as uint8 tensors and JSON,
never pickle. Gradients are averaged by DistributedDataParallel.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from cnnkit.train.state import MODEL_TENSORS, STATE_JSON, STATE_TENSORS

# A collective that waits longer than this fails the run rather than hanging it. A dead process
# is noticed far sooner (its sockets close, and the elastic agent stops the others within a
# second); this bounds the rarer silent case (a machine that vanished from the network), and
# stays well above what rank 0's checkpoint and report writing make the others wait.
TIMEOUT_S = 300
# Random streams of epoch_generator per rank: 0 shuffle (one global order), then augmentation
# and dropout; rank r > 0 draws its own (1 + 3r, 2 + 3r), so its images are not augmented as
# rank 0's are, and rank 0 draws what a single process draws.
STREAMS_PER_RANK = 3
STATE_FILES = (STATE_JSON, STATE_TENSORS, MODEL_TENSORS)


class Parallel:
    """This process's place in a data-parallel run and the run's parallel options."""

    def __init__(self, rank: int, world: int, local_rank: int, local_world: int,
                 sync_bn: bool = False, scale_lr: str = "none", warmup_epochs: int = 0):
        self.rank, self.world = rank, world
        self.local_rank, self.local_world = local_rank, local_world
        self.sync_bn, self.scale_lr, self.warmup_epochs = sync_bn, scale_lr, warmup_epochs
        self.device = torch.device("cpu")  # where collective tensors live (cuda for NCCL)
        self._tmp: tempfile.TemporaryDirectory | None = None

    @classmethod
    def from_env(cls, env=os.environ) -> "Parallel":
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                   int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run directory and runs the callbacks that write or decide."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world}"

    # -- the process group ----------------------------------------------------------------------
    def start(self, device: str = "auto") -> None:
        """Join the process group: NCCL with one GPU per local rank where the run uses CUDA,
        gloo on the CPU."""
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo",
                                    timeout=datetime.timedelta(seconds=TIMEOUT_S))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives ----------------------------------------------------------------------------
    def broadcast_bytes(self, data: bytes | None) -> bytes | None:
        """Rank 0's `data` (None allowed) on every rank."""
        size = torch.tensor([-1 if data is None else len(data)], dtype=torch.long,
                            device=self.device)
        dist.broadcast(size, 0)
        n = int(size.item())
        if n < 0:
            return None
        buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
               if self.rank == 0 and n else torch.empty(n, dtype=torch.uint8, device=self.device))
        if n:
            dist.broadcast(buf, 0)
        return buf.cpu().numpy().tobytes()

    def broadcast_json(self, obj):
        """Rank 0's JSON-able `obj` on every rank (the others pass anything, e.g. None)."""
        data = json.dumps(obj).encode() if self.rank == 0 else b""
        return json.loads(self.broadcast_bytes(data).decode())

    def sum(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor summed over the ranks (a copy, on the tensor's own device)."""
        out = []
        for t in tensors:
            t = torch.as_tensor(t)
            buf = t.detach().to(self.device, copy=True)
            dist.all_reduce(buf)
            out.append(buf.to(t.device))
        return out

    def agree_stop(self, stop: bool, reason: str | None) -> tuple[bool, str | None]:
        """Rank 0's stop decision (early stopping, a user's callback) on every rank, so all of
        them end at the same epoch."""
        d = self.broadcast_json({"stop": bool(stop), "reason": reason})
        return d["stop"], d["reason"]

    def share_state(self, state_dir: Path | None) -> Path | None:
        """A resumed run's training state on every rank: rank 0 sends the files of `state_dir`
        (None: the run starts afresh); the others get a private copy to load. Returns the
        directory to load from, or None."""
        names = self.broadcast_json(None if self.rank or state_dir is None else list(STATE_FILES))
        if names is None:
            return None
        if self.rank == 0:
            for name in names:
                self.broadcast_bytes((Path(state_dir) / name).read_bytes())
            return Path(state_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="cnnkit-state-")
        copy = Path(self._tmp.name) / "state"
        copy.mkdir()
        for name in names:
            (copy / name).write_bytes(self.broadcast_bytes(None))
        return copy

    # -- training -------------------------------------------------------------------------------
    def configure(self, spec, config):
        """The TrainConfig each rank trains with: batch_size is the global batch, which
        batch_size_per_process makes that times the processes."""
        import dataclasses

        if not spec.batch_size_per_process:
            return config
        return dataclasses.replace(config, batch_size=spec.batch_size_per_process * self.world)

    def stream(self, stream: int) -> int:
        """This rank's epoch_generator stream for augmentation (1) or dropout (2)."""
        return stream + STREAMS_PER_RANK * self.rank

    def wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        """`net` for the training forward: DistributedDataParallel, which averages gradients
        over the ranks during backward (and, with sync_bn, batch norm over the global batch).
        Evaluation runs `net` itself: its batches differ per rank, and DDP's forward would wait
        for the other ranks."""
        from torch.nn.parallel import DistributedDataParallel

        if self.sync_bn:
            # the new modules share the old parameters and buffers: the optimizer is unchanged
            _convert_sync_bn(net)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def scale_schedule(self, schedule, steps_per_epoch: int) -> None:
        """`scale_lr="linear"` (Goyal et al. 2017): the learning rate times the number of
        processes (the global batch grows with them under batch_size_per_process), reached by
        a linear warm-up from the unscaled rate over `warmup_epochs`."""
        k = self.world if self.scale_lr == "linear" else 1
        if k == 1:
            return
        schedule.base_lrs = [b * k for b in schedule.base_lrs]  # a resumed state brings its own
        warm = self.warmup_epochs * max(int(steps_per_epoch), 1)
        inner = schedule.multiplier

        def multiplier(step):
            ramp = 1.0 if step >= warm else (1 + (k - 1) * step / warm) / k
            return inner(step) * ramp
        schedule.multiplier = multiplier
        schedule.apply()

    def shard(self, loader):
        from cnnkit.distributed.shard import ShardedBatchLoader

        return ShardedBatchLoader(loader, self)

    def evaluate(self, trainer, x, y, max_batches=None) -> dict:
        from cnnkit.distributed.shard import evaluate_exactly

        return evaluate_exactly(self, trainer, x, y, max_batches)


def _convert_sync_bn(net: torch.nn.Module) -> None:
    """Batch norm layers of `net` (not `net` itself) become SyncBatchNorm, in place."""
    for name, child in net.named_children():
        converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(child)
        if converted is not child:
            setattr(net, name, converted)
