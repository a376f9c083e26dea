"""Where and in what precision training runs: `--device auto|cpu|cuda`, and `--precision auto`
(bf16 only where the hardware does it natively: emulated bf16 is slower than fp32)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from cnnkit.errors import CnnkitError


def cpu_has_bf16() -> bool:
    """True when the CPU does bf16 math natively (AVX512-BF16 or AMX); elsewhere bf16 autocast
    is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnkitError("device 'cuda' was asked for but no CUDA GPU is available; "
                          "use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device_type: str, precision: str):
    """The context a forward pass runs in at `precision` (resolved: fp32, bf16 or fp16):
    torch's autocast for bf16 and fp16, nothing for fp32."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()
