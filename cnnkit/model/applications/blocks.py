"""An application's blocks, by Keras's layer names: what fine-tuning freezes and unfreezes.

    blocks(model)["block_16"]       # MobileNetV2's last inverted residual block: its layers
    for layer in blocks(model)["block5"]:
        layer.trainable = True       # VGG16's top block, as Chollet's chapter fine-tunes it

A block is the run of layers whose names share a prefix: MobileNetV2's `block_16_*` (and
`Conv1`, `expanded_conv`, `Conv_1` around them), ResNet50's `conv5_block3_*` (and `conv1`),
VGG16's `block5_*`, EfficientNetB0's `block7a_*` (and `stem`, `top`). A layer without such a
prefix (a padding, a pooling, the input scaling) belongs to the block before it, or to the
first block where none comes before. `model` is an application or a model holding one as a
layer (cnnkit's fine-tuning model: cnnkit.model.applications.finetune).
"""
from __future__ import annotations

import re

from cnnkit.errors import CnnkitError, shown

# family -> (a layer name only that family has, the pattern whose group 1 is the block's name)
FAMILIES = {
    "mobilenetv2": ("bn_Conv1", r"^(?:bn_)?(Conv1|Conv_1|expanded_conv|block_\d+)"),
    "resnet50": ("conv1_conv", r"^(conv1|conv\d_block\d+)_"),
    "vgg16": ("block1_conv1", r"^(block\d+)_"),
    "efficientnetb0": ("stem_conv", r"^(stem|top|block\d+[a-z])_"),
}


def family(model) -> str | None:
    """Which application `model` is, by its layers' names (a renamed model is still known)."""
    names = set(model.layer_names())
    return next((f for f, (mark, _) in FAMILIES.items() if mark in names), None)


def backbone_of(model):
    """(the application inside `model`, or `model` itself, its family); one line if none."""
    from cnnkit.model.graph import Nested

    own = family(model)
    if own is not None:
        return model, own
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, Nested) and family(layer.model) is not None:
            return layer.model, family(layer.model)
    raise CnnkitError(f"{getattr(model, 'name', model)!r} is not one of cnnkit's applications "
                      f"({', '.join(FAMILIES)}) and holds none: it has no blocks by name")


def block_names(model) -> dict[str, list[str]]:
    """{block: its layers' names}, the blocks in the network's order (input to output)."""
    backbone, fam = backbone_of(model)
    from cnnkit.layers.symbolic import InputLayer

    pattern = re.compile(FAMILIES[fam][1])
    out: dict[str, list[str]] = {}
    waiting: list[str] = []  # layers before the first block: they join it
    current = None
    for layer, name in zip(backbone.layers, backbone.layer_names()):
        if isinstance(layer, InputLayer):
            continue
        m = pattern.match(name)
        if m:
            current = m.group(1)
            out.setdefault(current, []).extend(waiting)
            waiting = []
        if current is None:
            waiting.append(name)
        else:
            out[current].append(name)
    return out


def blocks(model) -> dict[str, list]:
    """{block: its layers (the layer objects: set their `trainable`)}, in the network's order."""
    backbone, _ = backbone_of(model)
    return {b: [backbone.get_layer(n) for n in names] for b, names in block_names(model).items()}


def pick_blocks(model, unfreeze) -> list[str]:
    """The blocks `unfreeze` names, in the network's order: an integer N (the top N blocks),
    'all', or block names (a list, or one string with commas); one line naming a bad one and
    the valid ones."""
    names = list(block_names(model))
    valid = ("an integer (the top N blocks), 'all', or block names: " + ", ".join(names))
    if isinstance(unfreeze, int) and not isinstance(unfreeze, bool):
        if not 0 <= unfreeze <= len(names):
            raise CnnkitError(f"unfreeze={unfreeze!r}: the backbone has {len(names)} blocks; "
                              f"valid: 0..{len(names)} (the top N blocks), 'all', or block "
                              "names", option="unfreeze", value=unfreeze)
        return names[len(names) - unfreeze:]
    if unfreeze == "all":
        return names
    wanted = [w.strip() for w in unfreeze.split(",")] if isinstance(unfreeze, str) else unfreeze
    if not isinstance(wanted, list) or not wanted:
        raise CnnkitError(f"unfreeze={shown(unfreeze)} is not understood; valid: {valid}",
                          option="unfreeze", value=unfreeze)
    bad = next((w for w in wanted if w not in names), None)
    if bad is not None:
        raise CnnkitError(f"unfreeze={shown(bad)} is not a block of {backbone_of(model)[0].name}"
                          f"; valid: {valid}", option="unfreeze", value=bad)
    return [n for n in names if n in wanted]
