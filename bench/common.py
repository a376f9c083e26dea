"""Shared pieces of the benchmarks: timing, the machine's GEMM ceiling, the Keras subprocess."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
KERAS_PY = BENCH / ".venv-keras" / "bin" / "python"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def median(values):
    return statistics.median(values)


def training_step(sequential, batch=128, bf16=True, compiled=False):
    """One Adam training step (label smoothing 0.1, channels_last, bf16 autocast unless
    bf16=False) of a cnnkit Sequential on a fixed random batch, as a callable: what the step
    benchmarks time. `compiled`: the network's forward under torch.compile (its graphs hold
    torch's ops: cnnkit's kernels step aside there), compiled by the first call."""
    import torch

    from cnnkit.train.module import as_model
    from cnnkit.train.optim import make_optimizer
    from cnnkit.train.optimizers import trained_parameters

    model = as_model(sequential)
    net = model.net.to(memory_format=torch.channels_last)
    opt = make_optimizer("adam", trained_parameters(model), 1e-3)
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    forward = torch.compile(net) if compiled else net

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def machine_line() -> str:
    import platform

    import torch

    from cnnkit.runs.provenance import cpu as cpu_record

    c = cpu_record()  # the model name alone ("AMD EPYC") does not tell Zen 3 from Zen 5
    cpu = (f"{c['model']} (family {c['family'] or '?'} model {c['model_number'] or '?'}; "
           + ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in c["flags"])
           + ")")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
            f"python {platform.python_version()}, load average {load:.2f}")


def warn_if_loaded() -> None:
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load:.2f} on {os.cpu_count()} cores: other processes compete "
              "for the CPU and every figure below is noisy", file=sys.stderr)


def gemm_ceiling(n: int = 1536, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a large square matmul: the practical ceiling of this CPU for torch."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times) / 1e9


def keras(args: list[str], timeout: float = 1800, script: str = "keras_baseline.py") -> dict | None:
    """Run bench/`script` (keras_baseline.py, keras_applications.py) in its own venv; None
    (with a message) where unavailable."""
    if not KERAS_PY.exists():
        print("Keras baseline skipped: bench/.venv-keras is missing (run bench/setup_keras.sh)",
              file=sys.stderr)
        return None
    proc = subprocess.run([str(KERAS_PY), str(BENCH / script), *args, "--json"],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        print(f"Keras baseline failed ({proc.returncode}): {proc.stderr.strip()[-500:]}",
              file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])
