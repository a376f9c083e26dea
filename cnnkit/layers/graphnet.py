"""The built graph model (cnnkit.model.graph.Functional): its layers' modules run in an order
where each layer's inputs come first, a BatchNormalization read only by a ReLU on cnnkit's
kernel (kernels.fuse.BNReLU), each value dropped after its last use."""
from __future__ import annotations

import torch

from cnnkit.layers.nn import Net


class GraphNet(Net):
    """A built graph model: `program` runs each layer on the outputs of the layers it was
    called on, in an order where those come first. `layers[name]` and `activations[name]`
    hold the modules as in Net (a state-dict key is `layers.<layer name>.<module key>`); an
    input layer's slot takes the network's input. Each value is dropped after its last use,
    so inference holds only what the rest of the graph still needs."""

    def __init__(self, layers, activations, program, inputs, output, output_activation):
        super().__init__(layers, activations, [], output_activation)
        self.inputs, self.output = list(inputs), output  # slot numbers
        names = list(self.layers)
        self._program = _schedule([
            (slot, self.layers[names[slot]], self.activations[names[slot]]
             if names[slot] in self.activations else None, tuple(args))
            for slot, args in program], output)
        self.steps = [step[1] for step in self._program]
        self.planned = _fuse(self._program, output)  # what _run runs (cnnkit.kernels.fuse)
        self._fast = _schedule([step[:4] for step in self.planned], output)

    def _run(self, *xs):
        if len(xs) != len(self.inputs):
            raise ValueError(f"this graph takes {len(self.inputs)} inputs; received {len(xs)}")
        values = dict(zip(self.inputs, xs))
        for slot, module, act, args, done in self._fast:
            y = module(*[values[j] for j in args])
            values[slot] = y if act is None else act(y)
            for j in done:
                del values[j]
        return values[self.output]

    def forward(self, *xs):
        if self.flip_average and not self.training and len(xs) == 1:
            n = xs[0].shape[0]
            logits = self._run(torch.cat([xs[0], xs[0].flip(3)]))
            return (logits[:n] + logits[n:]) * 0.5
        return self._run(*xs)

    def trace(self, xs, keep: set, grad_at: str | None = None):
        """({name: output} for the layers in `keep`, the last output): each layer's output as
        Keras defines it (its fused activation applied), for cnnkit.look's feature maps and
        Grad-CAM. At `grad_at` the output becomes a leaf that requires grad."""
        names = list(self.layers)
        values = dict(zip(self.inputs, xs))
        outs = {names[s]: values[s] for s in self.inputs if names[s] in keep}
        for slot, module, act, args, _ in self._program:
            y = module(*[values[j] for j in args])
            y = y if act is None else act(y)
            if names[slot] == grad_at:
                y = y.detach().requires_grad_()
            values[slot] = y
            if names[slot] in keep:
                outs[names[slot]] = y
        return outs, values[self.output]


def _schedule(entries, output) -> list:
    """(slot, module, activation, args) entries with, last, the slots no later entry reads."""
    last = {}
    for i, (_, _, _, args) in enumerate(entries):
        for j in args:
            last[j] = i
    return [(*entry, tuple(j for j in set(entry[3]) if last[j] == i and j != output))
            for i, entry in enumerate(entries)]


def _fuse(program, output) -> list:
    """The program with each BatchNormalization whose only reader is a ReLU layer run as one
    step on cnnkit's kernel (kernels.fuse.BNReLU, torch's ops where it cannot): the kernel
    computes relu(bn(x)) in one pass over memory, as a Sequential's plan does."""
    from cnnkit.kernels.bnrelu import bn_relu_pair
    from cnnkit.kernels.fuse import BNReLU

    readers: dict = {}
    for i, (_, _, _, args, _) in enumerate(program):
        for j in args:
            readers.setdefault(j, []).append(i)
    out, absorbed = [], set()
    for i, (slot, module, act, args, _) in enumerate(program):
        if i in absorbed:
            continue
        users = readers.get(slot, [])
        if (act is None and slot != output and len(users) == 1 and program[users[0]][3] == (slot,)
                and program[users[0]][2] is None and bn_relu_pair(module, program[users[0]][1])):
            relu = program[users[0]]
            out.append((relu[0], BNReLU(module, relu[1]), None, args, ()))
            absorbed.add(users[0])
        else:
            out.append((slot, module, act, args, ()))
    return out
