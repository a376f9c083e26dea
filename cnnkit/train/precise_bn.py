"""Precise batch-norm statistics (as Detectron2's and pycls's `precise BN`).

A BatchNormalization trains on each batch's own statistics and keeps moving averages for
inference: `running ← (1 - m)·running + m·batch` per step, starting from mean 0 and variance 1
(torch's m is 1 - Keras's momentum: 0.01 for Keras's default 0.99). After n steps a share
(1 - m)^n of those starting values is still in the average: 0.99^15 = 0.86 after the 15 steps
of a short run, so the model evaluates with statistics it never saw, at chance, silently.

So at the end of every epoch whose moving averages cannot have settled (more than SETTLED of
the starting values left in them), the trainer replaces them by the average, over a fixed
sample of the training images (unaugmented, as evaluation sees images), of each batch's
statistics, with the network in inference mode except its batch norms (dropout off) and no
gradients. The weights do not change, nor anything random (the sample has its own generator),
so a run repeats exactly, and a resumed one too. Longer runs keep their moving averages, as
Keras and torch do: by then they have forgotten their start, and only the last ~1/m steps,
where the weights move little, are in them.
"""
from __future__ import annotations

import torch
from torch import nn

from cnnkit.data.batches import epoch_generator

SETTLED = 0.01  # the starting values' share left in a moving average that has settled
SAMPLE_IMAGES = 4096  # training images the statistics are averaged over, at most
SAMPLE_STREAM = 3  # epoch_generator streams: 0 shuffle, 1 augmentation, 2 dropout, 3 this


def unsettled(net: nn.Module, frozen, steps: int) -> list:
    """The batch norms to recompute after `steps` training steps: every one that learns its
    statistics (a frozen one keeps them, as Keras's does) when any of them cannot have settled."""
    frozen = {id(m) for m in frozen}
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats and id(m) not in frozen]
    # momentum None is torch's plain average over every batch: nothing starting is left in it
    if any(m.momentum is not None and (1 - m.momentum) ** steps > SETTLED for m in norms):
        return norms
    return []


def sample(n: int, batch_size: int, seed: int, part: tuple[int, int] = (0, 1),
           max_batches: int | None = None) -> list[torch.Tensor]:
    """The same images every time for one seed: batches of indices into the training set, this
    rank's share of them (`part` = (rank, world)). Shuffled, so that each batch is a mix of the
    classes as in training (a folder's images come sorted by class)."""
    order = torch.randperm(n, generator=epoch_generator(seed, 0, SAMPLE_STREAM))[:SAMPLE_IMAGES]
    batches = [order[i:i + batch_size].sort().values for i in range(0, len(order), batch_size)]
    batches = [b for b in batches if len(b) > 1][:max_batches]  # one image has no variance
    rank, world = part
    return batches[rank::world]


@torch.no_grad()
def recompute(net: nn.Module, norms: list, batches, forward, reduce=None) -> int:
    """Set each of `norms`' moving mean and variance to the average of its per-batch statistics
    over `batches` (`forward(indices)` runs the network on those images), weighted by batch size.
    `reduce` sums tensors over the ranks of a data-parallel run, so every rank ends with the
    same statistics. Returns the number of images used."""
    modes = [(m, m.training) for m in net.modules()]
    before = [(bn.momentum, bn.running_mean.clone(), bn.running_var.clone(),
               bn.num_batches_tracked.clone()) for bn in norms]
    sums = [torch.zeros_like(bn.running_mean) for bn in norms]
    sums_var = [torch.zeros_like(bn.running_var) for bn in norms]
    seen = torch.zeros((), dtype=torch.float64)
    done = False
    try:
        net.eval()  # dropout off
        for bn in norms:
            bn.train()
            bn.momentum = 1.0  # the moving statistics become this batch's own
        for idx in batches:
            forward(idx)
            for bn, s, v in zip(norms, sums, sums_var):
                s.add_(bn.running_mean, alpha=len(idx))
                v.add_(bn.running_var, alpha=len(idx))
            seen += len(idx)
        if reduce is not None:
            *summed, seen = reduce(*sums, *sums_var, seen)
            sums, sums_var = summed[:len(norms)], summed[len(norms):]
        if seen > 0:
            for bn, s, v in zip(norms, sums, sums_var):
                bn.running_mean.copy_(s / seen)
                bn.running_var.copy_(v / seen)
            done = True
    finally:
        for bn, (momentum, mean, var, count) in zip(norms, before):
            bn.momentum = momentum
            bn.num_batches_tracked.copy_(count)  # steps trained, which this was not
            if not done:
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
        for m, training in modes:
            m.train(training)
    return int(seen) if done else 0


def settle_norms(trainer, x_train, frozen, steps: int) -> dict | None:
    """At an epoch's end, after `steps` training steps: the trainer's batch norms recomputed
    over its training images `x_train` where their moving averages cannot have settled.
    Returns {"images", "steps"} then, else None."""
    norms = unsettled(trainer.model.net, frozen, steps)
    if not norms:
        return None
    par = trainer.parallel
    batches = sample(len(x_train), trainer.config.batch_size, trainer.seed,
                     (par.rank, par.world) if par is not None else (0, 1),
                     max_batches=1 if trainer.config.dry_run else None)

    def forward(idx):  # float32, as evaluation runs; not DDP's wrapper: no gradients to sync
        xb = x_train.index_select(0, idx.to(x_train.device))  # uint8 (B, H, W, C)
        trainer._forward(trainer._input(xb.to(trainer.device)))

    images = recompute(trainer.model.net, norms, batches, forward,
                       reduce=par.sum if par is not None else None)
    return {"images": images, "steps": steps}


def recomputed_note(record: dict) -> str:
    return (f"Batch-norm statistics recomputed over {record['images']:,} training images: the "
            f"moving averages had seen {record['steps']} steps, too few to settle")
