"""The built graph model (cnnkit.model.graph.Functional): its layers' modules run in an order
where each layer's inputs come first, a BatchNormalization read only by a ReLU on cnnkit's
kernel (kernels.fuse.BNReLU), a frozen convolution's batch norm folded into it (kernels.fuse.ConvBN),
each value dropped after its last use."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.nn import Conv2d, DepthwiseConv2d, Net


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
        self._fast = _schedule([step[:4] for step in _fold(self.planned, output)], output)

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

    def merge(entry, reader):
        return BNReLU(entry[1], reader[1]) if reader[2] is None and bn_relu_pair(
            entry[1], reader[1]) else None
    return _pairs(program, output, merge)


def _fold(planned, output) -> list:
    """The plan with each convolution whose only reader is a batch norm (or a BNReLU step) run
    with it as one ConvBN step, which folds the batch norm into the convolution while neither
    trains (a frozen backbone) and runs the two as they are otherwise. `planned` stays what
    cnnkit's kernels are said to run (a frozen batch norm is torch's own there too)."""
    return _pairs(planned, output, lambda entry, reader: ConvBN(entry[1], reader[1])
                  if ConvBN.pair(entry[1], reader[1]) else None)


def _pairs(program, output, merge) -> list:
    """The program with each step that has no activation of its own and one reader, which
    reads it alone, run with that reader as the one step `merge(entry, reader)` makes (None:
    not a pair), in the reader's slot."""
    readers: dict = {}
    for i, (_, _, _, args, _) in enumerate(program):
        for j in args:
            readers.setdefault(j, []).append(i)
    out, absorbed = [], set()
    for i, (slot, module, act, args, _) in enumerate(program):
        if i in absorbed:
            continue
        users = readers.get(slot, [])
        step = None
        if act is None and slot != output and len(users) == 1 \
                and program[users[0]][3] == (slot,):
            step = merge(program[i], program[users[0]])
        if step is not None:
            reader = program[users[0]]
            out.append((reader[0], step, reader[2], args, ()))
            absorbed.add(users[0])
        else:
            out.append((slot, module, act, args, ()))
    return out


class ConvBN:
    """A convolution (Conv2d or DepthwiseConv2d) and the batch norm that alone reads it
    (or a BNReLU: and its ReLU). While neither trains - a frozen backbone: `trainable = False`
    leaves none of their parameters requiring grad and runs the batch norm on its moving
    statistics; or any model in inference mode without gradients: predict, evaluate, serve -
    one convolution with the batch norm folded into its weights and bias, so the
    batch norm's pass over the activations is gone (bench/README.md: 20-33% of a frozen
    MobileNetV2 step). Otherwise the two steps as they are. The parameters stay as they are."""

    def __init__(self, conv, after):
        from cnnkit.kernels.fuse import BNReLU

        self.conv, self.after = conv, after
        self.bn = after.bn if isinstance(after, BNReLU) else after
        self.relu = after.relu if isinstance(after, BNReLU) else None
        self.inner = getattr(conv, "depthwise", conv)  # the module with .conv, .symmetric, .pads
        self.params = [*self.inner.conv.parameters(), *self.bn.parameters()]

    def folded(self):
        """(weight, bias) with the batch norm folded in, in float64 so that they round once,
        as the two layers' would; kept until a tensor they come from changes (torch counts
        every in-place change in `_version`: a loaded state, an optimizer step)."""
        bn, c = self.bn, self.inner.conv
        sources = [t for t in (c.weight, c.bias, bn.weight, bn.bias, bn.running_mean,
                               bn.running_var) if t is not None]
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in sources)
        if getattr(self, "_key", None) != key:
            scale = bn.weight.double() * torch.rsqrt(bn.running_var.double() + bn.eps)
            bias = bn.bias.double() - bn.running_mean.double() * scale
            if c.bias is not None:
                bias = bias + c.bias.double() * scale
            weight = c.weight.double() * scale.reshape(-1, 1, 1, 1)
            self._key, self._folded = key, (weight.to(c.weight.dtype), bias.to(c.weight.dtype))
        return self._folded

    @staticmethod
    def pair(conv, after) -> bool:
        from cnnkit.kernels.fuse import BNReLU

        bn = after.bn if isinstance(after, BNReLU) else after
        return (type(conv) in (Conv2d, DepthwiseConv2d) and type(bn) is nn.BatchNorm2d
                and bn.affine and bn.track_running_stats)

    def __call__(self, x):
        bn, c = self.bn, self.inner.conv
        if bn.training or (torch.is_grad_enabled()
                           and any(p.requires_grad for p in self.params)):
            return self.after(self.conv(x))
        weight, bias = self.folded()
        if not self.inner.symmetric:
            x = F.pad(x, self.inner.pads)
        y = F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)
        return y if self.relu is None else self.relu(y)
