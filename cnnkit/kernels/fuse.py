"""Which of a network's steps cnnkit's kernels take over: `plan(steps)` turns `Net.steps` into
the callables `Net` runs, each a module or a pair that tries a kernel and falls back to the
modules (cnnkit.kernels.stem, .bnrelu). The modules, their parameters and the state dict stay
as they are: a plan only changes how a forward computes them. `layers_on_kernels` names the
layers a plan gives the kernels, and `prepare` readies them for a run (config.json records
both)."""
from __future__ import annotations

from cnnkit import kernels
from cnnkit.errors import CnnkitError
from cnnkit.kernels.bnrelu import bn_relu_pair, run_bn_relu
from cnnkit.kernels.stem import run_stem, stem_pair


class Stem:
    """The first Conv2D and its 2x2 max-pool."""

    def __init__(self, conv, pool):
        self.steps = [conv, pool]

    def __call__(self, x):
        y = run_stem(self.steps, x)
        return y if y is not None else self.steps[1](self.steps[0](x))


class BNReLU:
    """A BatchNormalization and the ReLU after it."""

    def __init__(self, bn, relu):
        self.bn, self.relu = bn, relu

    def __call__(self, x):
        y = run_bn_relu(self.bn, self.relu, x)
        return y if y is not None else self.relu(self.bn(x))


def plan(steps) -> list:
    out, i = [], 0
    if stem_pair(steps):
        out.append(Stem(steps[0], steps[1]))
        i = 2
    while i < len(steps):
        if i + 1 < len(steps) and bn_relu_pair(steps[i], steps[i + 1]):
            out.append(BNReLU(steps[i], steps[i + 1]))
            i += 2
        else:
            out.append(steps[i])
            i += 1
    return out


def layers_on_kernels(net) -> dict[str, list[str]]:
    """By kernel, the layers of a cnnkit network (by their names in `net.layers`, a fused
    activation by its layer's name) that `plan` gives cnnkit's kernels: config.json's
    `resolved.kernel_layers`. {} for a network without `steps` (a user's own module)."""
    steps = getattr(net, "steps", None)
    planned = [step[1] for step in getattr(net, "planned", ())]  # a graph's, already planned
    if not steps:
        return {}
    names = {id(m): n for n, m in getattr(net, "activations", {}).items()}
    names.update({id(m): n for n, m in getattr(net, "layers", {}).items()})

    def name(module) -> str:
        return names.get(id(module), type(module).__name__)

    out: dict[str, list[str]] = {}
    for step in planned or plan(steps):
        if isinstance(step, Stem):
            out.setdefault("stem", []).append(" + ".join(map(name, step.steps)))
        elif isinstance(step, BNReLU):  # in training; eval-mode batch norm is torch's
            out.setdefault("bn_relu", []).append(f"{name(step.bn)} + {name(step.relu)}")
        elif getattr(step, "two_by_two", False):  # cnnkit's MaxPool2d runs cnnkit.kernels.pool
            out.setdefault("pool", []).append(name(step))
    return out


def prepare(net, device: str, precision: str = "auto",
            say=print) -> tuple[str, dict[str, list[str]]]:
    """For a run cnnkit starts: compile the kernels now, before training and saying so, where
    this network has layers they compute and they are not compiled yet (a forward pass never
    compiles them); then config.json's (`resolved.kernels`, `resolved.kernel_layers`): 'cnnkit'
    and the layers on each kernel, or 'torch (why)' and {}."""
    import torch

    layers = layers_on_kernels(net)
    if not layers:
        return "torch (no layers of this model that cnnkit's kernels compute)", {}
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return "torch (a CUDA device)", {}
    if precision == "fp16":  # the kernels compute bf16 and float32 (kernels.bnrelu.DTYPES)
        return "torch (fp16: cnnkit's kernels compute bf16 and float32)", {}
    failed = None
    if kernels.needs_build():  # none yet, or one that failed verification: build() says so
        if kernels.compiler() is not None:
            say("Compiling cnnkit's kernels for this CPU (once; `python -m cnnkit.kernels` or "
                "`make setup` does it ahead)")
        try:
            kernels.build()
        except CnnkitError as e:  # the run goes on, on torch's ops; config.json says why
            failed = str(e)
            say(f"Note: {failed}")
    if kernels.loaded() is None:
        return f"torch ({failed or kernels.why_not()})", {}
    return "cnnkit", layers
