"""Evaluation for the Trainer: logits in large fp32 batches under inference_mode, and the loss
and metrics summed over them exactly (one answer for one image, whatever the training precision)."""
from __future__ import annotations

import torch

from cnnkit.errors import CnnkitError
from cnnkit.model.predict import batch_size_for, evaluating
from cnnkit.train.feeds import is_loader


@torch.inference_mode()
def batched_logits(trainer, x, max_batches: int | None = None):
    """(start, logits (B, K) fp32) over `x` in evaluation batches, capped as prediction's
    (`batch_size_for`); over a loader's batches, (their labels, logits)."""
    with evaluating(trainer.model.net):
        if is_loader(x):
            batches = ((yb, xb) for xb, yb in x)
        else:
            bs = batch_size_for(x, trainer.config.eval_batch_size)
            batches = ((start, trainer._input(x[start:start + bs].to(trainer.device,
                                                                     non_blocking=True)))
                       for start in range(0, len(x), bs))
        for i, (start, xb) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            # fp32 even where training runs in bf16: validation, the run's test score,
            # `cnnkit evaluate` and `model.predict` must give one answer for one image
            yield start, trainer._forward(xb).float()  # (B, K)


def evaluate_batches(trainer, x, y, max_batches=None) -> dict:
    """{'loss', *metrics} over all of (x, y), or over a loader's (x, labels) batches."""
    loader = is_loader(x)
    y = None if loader else y.to(trainer.device)
    loss_sum = torch.zeros((), device=trainer.device)
    hits = {k: torch.zeros((), device=trainer.device) for k in trainer.metrics}
    seen = 0
    for start, logits in batched_logits(trainer, x, max_batches):
        yb = start.to(trainer.device) if loader else y[start:start + len(logits)]
        loss_sum += trainer.loss_fn(logits, yb) * len(yb)
        for k, count in trainer.metrics.items():
            hits[k] += count(logits, yb)
        seen += len(yb)
    if seen == 0:
        raise CnnkitError("the evaluation data gave no batches")
    with torch.inference_mode():
        penalty = float(trainer._penalty())
    return {"loss": loss_sum.item() / seen + penalty,
            **{k: v.item() / seen for k, v in hits.items()}}
