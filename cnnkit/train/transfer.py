"""Transfer learning (seed 001): start from trained weights, optionally freeze the
convolutional part, and give the model a new head when the class count differs."""
from __future__ import annotations

from cnnkit.errors import CnnkitError
from cnnkit.layers import Dense, Flatten, GlobalAveragePooling2D


def init_from(model, source_dir, num_classes: int, freeze: bool):
    """Copy every weight of `source_dir`'s model whose name (`layers.<layer name>.<key>`) and
    shape fit `model`."""
    from cnnkit.model.graph import model_from_config
    from cnnkit.model.saving import load

    source = load(source_dir)
    if tuple(source.input_shape) != tuple(model.input_shape):
        raise CnnkitError(f"--init-from {source_dir}: its input shape {tuple(source.input_shape)} "
                          f"does not fit the data's {tuple(model.input_shape)}")
    target = model_from_config(source.get_config())
    last = target.layers[-1]
    if not isinstance(last, Dense):
        raise CnnkitError(f"--init-from {source_dir}: the model must end in a Dense layer")
    if last.units != num_classes:  # a new head for the new classes
        target.layers[-1] = Dense(num_classes, activation=last.activation, use_bias=last.use_bias,
                                  name=last.name)
    own = target.net.state_dict()
    copied = {k: v for k, v in source.net.state_dict().items()
              if k in own and own[k].shape == v.shape}
    target.net.load_state_dict(copied, strict=False)
    if freeze:
        freeze_features(target)
    target.class_names, target.dataset = model.class_names, model.dataset
    return target


def freeze_features(model) -> int:
    """Stop gradients into every layer before the first Flatten/GlobalAveragePooling2D."""
    cut = next((i for i, layer in enumerate(model.layers)
                if isinstance(layer, (Flatten, GlobalAveragePooling2D))), None)
    if cut is None:
        raise CnnkitError("--freeze: the model has no Flatten or GlobalAveragePooling2D, so there "
                          "is no convolutional part to keep fixed")
    return freeze_layers(model, model.layer_names()[:cut])


def freeze_layers(model, names) -> int:
    """Stop gradients into the layers called `names`; returns how many numbers that fixes."""
    frozen = 0
    for name in names:
        for p in model.layer_module(name).parameters():
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
