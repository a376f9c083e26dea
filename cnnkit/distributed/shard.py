"""Each rank's share of the data: its part of every global batch, and exact evaluation.

Training: one global permutation per (seed, epoch), drawn exactly as a single process draws it;
each global batch of `batch_size` is cut into `world` contiguous parts (sizes differ by at most
one), and rank r trains on part r. A rank's loss is weighted by its part's share of the global
batch (`weight`), so that DDP's average of the ranks' gradients is the gradient of the global
batch's mean loss, the single process's gradient, also for an epoch's smaller last batch.

Evaluation: no DistributedSampler, whose padding repeats samples to even the shards (and so
miscounts accuracy, pytorch #25162). The split is cut into the same eval batches a single
process uses, the ranks take turns over the batches, and each batch's loss sum and correct
count are all-reduced into their place; rank-wise zeros add exactly, and the batch terms are
then summed in the single process's order, so the result equals one process's to the last digit.
"""
from __future__ import annotations

import torch

from cnnkit.data.batches import BatchLoader, batch_indices, epoch_generator
from cnnkit.train.losses import correct_count


class ShardedBatchLoader(BatchLoader):
    """A BatchLoader (built by the trainer as for one process) that yields this rank's part of
    each global batch. `len()` counts global batches, the same on every rank; `weight` is the
    current part's loss weight (len(part) * world / len(global batch))."""

    def __init__(self, loader: BatchLoader, parallel):
        self.__dict__.update(loader.__dict__)
        self.parallel = parallel
        self.weight = 1.0

    def _gather(self, t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        t = t.index_select(0, idx.to(t.device))
        move = getattr(self, "_to_device", None)
        return move(t) if move is not None else t.to(self.device, non_blocking=True)

    def __iter__(self):
        par = self.parallel
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = epoch_generator(self.seed, epoch, 0)
        augment_rng = epoch_generator(self.seed, epoch, par.stream(1))
        for idx in batch_indices(len(self.x), self.batch_size, self.shuffle, order, self.drop_last,
                                 self.epoch_order(order)):
            part = torch.tensor_split(idx, par.world)[par.rank]  # contiguous, never padded
            self.weight = len(part) * par.world / len(idx)
            xb, yb = self._gather(self.x, part), self._gather(self.y, part)
            yield self._batch(xb, yb, augment_rng, augment=len(part) > 0)


def evaluate_exactly(parallel, trainer, x, y, max_batches=None) -> dict:
    """{'loss', 'accuracy'} over all of (x, y), as Trainer._evaluate computes them in one
    process: the same batches, the same float32 sums in the same order."""
    bs = trainer.config.eval_batch_size
    starts = list(range(0, len(x), bs))[:max_batches]
    terms = torch.zeros(len(starts), dtype=torch.float32, device=trainer.device)
    correct = torch.zeros(len(starts), dtype=torch.long, device=trainer.device)
    y = y.to(trainer.device)
    for b in range(parallel.rank, len(starts), parallel.world):
        s = starts[b]
        for _, logits in trainer._batched_logits(x[s:s + bs]):  # one batch: the trainer's path
            yb = y[s:s + len(logits)]
            terms[b] = trainer.loss_fn(logits, yb) * len(yb)
            correct[b] = correct_count(logits, yb)
    terms, correct = parallel.sum(terms, correct)
    loss_sum = torch.zeros((), device=trainer.device)
    for t in terms:  # the single process's running sum, term by term
        loss_sum += t
    seen = min(len(x), len(starts) * bs)
    with torch.inference_mode():
        penalty = float(trainer._penalty())
    return {"loss": loss_sum.item() / seen + penalty, "accuracy": int(correct.sum()) / seen}
