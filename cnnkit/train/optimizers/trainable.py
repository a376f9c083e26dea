"""Which parameters training may update: Keras's `trainable` flag on a model's layers, and the
batch-norm modules that a freeze puts in inference mode."""
from __future__ import annotations

FROZEN_BY_FLAG = "_cnnkit_frozen_by_flag"  # ids of parameters a `trainable = False` switched off


def trained_parameters(model) -> list:
    """The parameters training may update, honouring Keras's `trainable` flag on a model's
    layers (`model.layers[0].trainable = False`) and on the model itself, for cnnkit's own
    layers as for cnnkit.keras's.

    A frozen layer's parameters get `requires_grad=False`, so no gradient is computed for them,
    the optimizer never holds them (their weights cannot move, and weight decay cannot shrink
    them) and the summary counts them as non-trainable. A layer made trainable again gets its
    gradients back; a parameter switched off by other means (`p.requires_grad_(False)`,
    `--freeze`) stays off. A user's own nn.Module has no layer list: its `requires_grad`
    flags are what counts."""
    net = model.net
    params = list(net.parameters())
    if not (hasattr(model, "layers") and hasattr(model, "layer_names")):
        return [p for p in params if p.requires_grad]
    frozen = net.__dict__.setdefault(FROZEN_BY_FLAG, set())
    for module, trainable in _layer_modules(model):
        for p in module.parameters():
            if not trainable and p.requires_grad:
                p.requires_grad_(False)
                frozen.add(id(p))
            elif trainable and id(p) in frozen:
                p.requires_grad_(True)
                frozen.discard(id(p))
    return [p for p in params if p.requires_grad]


def frozen_norms(model) -> list:
    """The batch-norm modules of cnnkit's own layers whose weights are all frozen (the
    `trainable` flag, or `--freeze`), and those of a model nested with `training=False`
    (Keras's `base_model(x, training=False)`, cnnkit's --backbone), trainable or not: Keras
    runs them in inference mode, so their moving statistics stay as trained. The trainer sets
    them to eval() after each `net.train()`, and never recomputes their statistics
    (precise_bn). A user's own nn.Module is left to torch's rules (train mode updates the
    statistics whatever `requires_grad` says)."""
    from torch import nn

    if not (hasattr(model, "layers") and hasattr(model, "layer_names")):
        return []
    norms = {}
    for module, _ in _layer_modules(model):
        params = list(module.parameters())
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and params \
                    and not any(p.requires_grad for p in params):
                norms[id(m)] = m
    for module in _inference_models(model):
        norms.update((id(m), m) for m in module.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return list(norms.values())


def _inference_models(model):
    """The networks of the models nested in `model` with training=False."""
    from cnnkit.model.graph import Nested

    for layer in model.layers:
        if isinstance(layer, Nested):
            if layer.training is False:
                yield layer.model.net
            else:
                yield from _inference_models(layer.model)


def _layer_modules(model, whole: bool = True):
    """(torch module, trainable) for each layer of `model`; a model nested in it (Keras's
    `base_model(x)` in a graph, or in a Sequential) gives its own layers, so that a flag set on
    one of them (`for layer in base_model.layers[:100]: layer.trainable = False`) counts too."""
    from cnnkit.model.graph import Nested

    whole = whole and getattr(model, "trainable", True) is not False
    for layer, name in zip(model.layers, model.layer_names()):
        trainable = whole and getattr(layer, "trainable", True) is not False
        if isinstance(layer, Nested):
            yield from _layer_modules(layer.model, trainable)
        else:
            yield model.net.layers[name], trainable
