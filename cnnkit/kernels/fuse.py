"""Which of a network's steps cnnkit's kernels take over: `plan(steps)` turns `Net.steps` into
the callables `Net` runs, each a module or a pair that tries a kernel and falls back to the
modules (cnnkit.kernels.stem, .bnrelu). The modules, their parameters and the state dict stay
as they are: a plan only changes how a forward computes them."""
from __future__ import annotations

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
