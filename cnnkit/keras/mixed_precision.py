"""Keras's mixed precision switch for cnnkit.keras's fit: `"float32"` (Keras's default, and
ours: the weights after training match real Keras's), `"mixed_bfloat16"` (bf16 autocast, the
core's default where the hardware has bf16 math) or `"mixed_float16"` (fp16 with loss scaling).

    from cnnkit.keras import mixed_precision
    mixed_precision.set_global_policy("mixed_bfloat16")
"""
from __future__ import annotations

from cnnkit.errors import one_of

PRECISION = {"float32": "fp32", "mixed_bfloat16": "bf16", "mixed_float16": "fp16"}
_policy = ["float32"]  # one per process, as Keras's


def set_global_policy(policy) -> None:
    name = getattr(policy, "name", policy)
    if name not in PRECISION:
        raise one_of("mixed precision policy", name, list(PRECISION))
    _policy[0] = name


def global_policy() -> str:
    return _policy[0]


def precision() -> str:
    """The TrainConfig precision of the current policy."""
    return PRECISION[_policy[0]]
