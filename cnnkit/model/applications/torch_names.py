"""A PyTorch state dict into an application network: each source's module names (torchvision's
`features.N...`, timm's `blocks.i.j...`) for Keras's layer names, then one copy that uses every
tensor of the file, or names the first few it could not place and changes nothing.

cnnkit's layers hold PyTorch's own layouts (convolutions OIHW, a depthwise kernel (C, 1, kh, kw),
dense (out, in)), so tensors copy as they are, but for one: a dense layer after Flatten, whose
columns PyTorch orders (C, H, W) and Keras's Flatten (H, W, C)."""
from __future__ import annotations

import math
import re

from cnnkit.errors import CnnkitError
from cnnkit.model.applications.torch_files import SHOWN, Source

TOP = "classifier."  # the classifier's keys in every source: skipped with include_top=False


def _vgg16(names):
    """torchvision: features.N numbers every module (conv, ReLU, pool), classifier.0/3/6 the
    dense layers (ReLU and Dropout between)."""
    n = 0
    for name in names:
        if re.fullmatch(r"block\d+_conv\d+", name):
            yield name, f"features.{n}"
            n += 2  # the conv and its ReLU
        elif re.fullmatch(r"block\d+_pool", name):
            n += 1
    yield from zip(("fc1", "fc2", "predictions"), ("classifier.0", "classifier.3", "classifier.6"))


def _mobilenet_v2(names):
    """torchvision: features.0 the first conv + BN, features.1..17 the inverted residual blocks
    (conv.K), features.18 the last 1x1 conv + BN, classifier.1 the dense layer."""
    yield from (("Conv1", "features.0.0"), ("bn_Conv1", "features.0.1"))
    blocks = sorted({int(m.group(1)) for m in map(re.compile(r"block_(\d+)_").match, names) if m})
    yield from (("expanded_conv_depthwise", "features.1.conv.0.0"),
                ("expanded_conv_depthwise_BN", "features.1.conv.0.1"),
                ("expanded_conv_project", "features.1.conv.1"),
                ("expanded_conv_project_BN", "features.1.conv.2"))
    for b in blocks:  # expand (conv.0), depthwise (conv.1), project (conv.2, BN conv.3)
        f = f"features.{b + 1}.conv"
        for part, key in (("expand", "0.0"), ("expand_BN", "0.1"), ("depthwise", "1.0"),
                          ("depthwise_BN", "1.1"), ("project", "2"), ("project_BN", "3")):
            yield f"block_{b}_{part}", f"{f}.{key}"
    last = f"features.{len(blocks) + 2}"
    yield from (("Conv_1", f"{last}.0"), ("Conv_1_bn", f"{last}.1"),
                ("predictions", "classifier.1"))


def _efficientnet_blocks(names):
    """(Keras's block prefix, stage index, block index in the stage, expands?) per block."""
    stages = {}
    for name in names:
        m = re.match(r"block(\d+)([a-z])_", name)
        if m:
            stages.setdefault(m.group(0), (int(m.group(1)) - 1, ord(m.group(2)) - 97))
    for prefix, (i, j) in stages.items():
        yield prefix, i, j, f"{prefix}expand_conv" in names


def _efficientnet_b0(names):
    """torchvision: features.0 the stem, features.(i+1).j.block.K the blocks (expand, depthwise,
    squeeze-and-excite fc1/fc2, project), features.8 the head conv, classifier.1."""
    yield from (("stem_conv", "features.0.0"), ("stem_bn", "features.0.1"))
    for prefix, i, j, expands in _efficientnet_blocks(names):
        parts = (("expand_conv", "0.0"), ("expand_bn", "0.1")) if expands else ()
        k = 1 if expands else 0  # the depthwise conv's position in the block
        parts += (("dwconv", f"{k}.0"), ("bn", f"{k}.1"), ("se_reduce", f"{k + 1}.fc1"),
                  ("se_expand", f"{k + 1}.fc2"), ("project_conv", f"{k + 2}.0"),
                  ("project_bn", f"{k + 2}.1"))
        for part, key in parts:
            yield f"{prefix}{part}", f"features.{i + 1}.{j}.block.{key}"
    yield from (("top_conv", "features.8.0"), ("top_bn", "features.8.1"),
                ("predictions", "classifier.1"))


def _timm_efficientnet(names):
    """timm: conv_stem/bn1, blocks.i.j (a depthwise-separable first stage: conv_dw, bn1, se,
    conv_pw, bn2; then conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3), conv_head/bn2, classifier."""
    yield from (("stem_conv", "conv_stem"), ("stem_bn", "bn1"))
    for prefix, i, j, expands in _efficientnet_blocks(names):
        parts = ((("expand_conv", "conv_pw"), ("expand_bn", "bn1"), ("dwconv", "conv_dw"),
                  ("bn", "bn2"), ("project_conv", "conv_pwl"), ("project_bn", "bn3"))
                 if expands else (("dwconv", "conv_dw"), ("bn", "bn1"),
                                  ("project_conv", "conv_pw"), ("project_bn", "bn2")))
        parts += (("se_reduce", "se.conv_reduce"), ("se_expand", "se.conv_expand"))
        for part, key in parts:
            yield f"{prefix}{part}", f"blocks.{i}.{j}.{key}"
    yield from (("top_conv", "conv_head"), ("top_bn", "bn2"), ("predictions", "classifier"))


MAPS = {"vgg16": _vgg16, "mobilenet_v2": _mobilenet_v2, "efficientnet_b0": _efficientnet_b0,
        "timm_efficientnet": _timm_efficientnet}


def load_state(model, source: Source, where: str) -> None:
    """`source.state` into `model` (built for it: see check_built_for), all or nothing."""
    import torch

    names, infos = model.layer_names(), model.layer_infos()
    check_built_for(model, source, where, infos)
    present = set(names)
    state, used, missing, misshaped, plan = source.state, set(), [], [], []
    for name, prefix in MAPS[source.arch](names):
        if name not in present:  # the top of a file loaded with include_top=False
            continue
        for key, target in model.net.layers[name].state_dict().items():
            suffix = key.rsplit(".", 1)[-1]  # conv.weight, depthwise.conv.weight -> weight
            file_key = f"{prefix}.{suffix}"
            if file_key not in state:
                if suffix != "num_batches_tracked":  # a counter some files leave out
                    missing.append(file_key)
                continue
            value = _keras_columns(model, infos, names.index(name), state[file_key])
            used.add(file_key)
            if tuple(value.shape) != tuple(target.shape):
                misshaped.append(f"{file_key} {tuple(state[file_key].shape)} for layer {name!r} "
                                 f"{tuple(target.shape)}")
            plan.append((target, value))
    skip_top = "predictions" not in present
    unexpected = [k for k in state if k not in used and not (skip_top and k.startswith(TOP))]
    for what, keys in (("misshaped", misshaped), ("missing", missing),
                       ("unexpected", unexpected)):
        if keys:
            more = f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
            raise CnnkitError(f"{where}: {source.name} weights do not fit {model.name!r}: "
                              f"{what} {', '.join(keys[:SHOWN])}{more}")
    with torch.no_grad():
        for target, value in plan:
            target.copy_(value.to(target.dtype))
    model.preprocessing = source.preprocessing


def _keras_columns(model, infos, i, value):
    """Layer i's dense weight after Flatten of (H, W, C) maps, its columns in Keras's (H, W, C)
    order (PyTorch's torch.flatten ran over (C, H, W)); any other tensor as it is."""
    before = model.inbound[i] if hasattr(model, "inbound") else [i - 1]
    if value.dim() != 2 or len(before) != 1 or infos[before[0]].layer.type != "Flatten":
        return value
    shape = infos[before[0]].input_shape
    if len(shape) != 3 or value.shape[1] != math.prod(shape):
        return value  # reported as misshaped
    h, w, c = shape
    return value.reshape(value.shape[0], c, h, w).permute(0, 2, 3, 1).reshape(value.shape[0], -1)


def check_built_for(model, source: Source, where: str, infos) -> None:
    """The network follows the file's own (padding, batch norm epsilon, no input scaling inside
    the network, as the PyTorch network has none): else one line saying how to build it."""
    for info in infos:
        layer, kind, why = info.layer, info.layer.type, None
        if kind in ("Rescaling", "Normalization"):
            why = f"layer {info.name!r} scales the input inside the network"
        elif (kind == "BatchNormalization" and source.epsilon is not None
              and not math.isclose(layer.epsilon, source.epsilon)):
            why = (f"batch norm epsilon {layer.epsilon:g} in {info.name!r}, the file's "
                   f"{source.epsilon:g}")
        elif source.torch_padding and kind == "ZeroPadding2D" and (
                layer.pads[0] != layer.pads[1] or layer.pads[2] != layer.pads[3]):
            why = f"TensorFlow's asymmetric padding in {info.name!r}"
        elif source.torch_padding and getattr(layer, "padding", None) == "same" and max(
                getattr(layer, "strides", (1, 1))) > 1:
            why = f"TensorFlow's 'same' padding in the strided {info.name!r}"
        if why:
            raise CnnkitError(f"{where}: holds {source.name} weights, but {model.name!r} was built "
                              f"for Keras's ({why}); build it with {source.builder}(weights=PATH), "
                              "which follows the file's network")
