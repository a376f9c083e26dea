"""The few `keras.ops` functions keras.io's examples call on a model's output:
`keras.ops.expand_dims(img_array, 0)` before `model(img_array)`, `keras.ops.sigmoid(logits)`,
`softmax`, `argmax`, `convert_to_numpy`. They take arrays or torch tensors and return torch
tensors, as Keras 3 on its torch backend does. Any other name is an AttributeError saying
what is here.
"""
from __future__ import annotations


def _tensor(x):
    import torch

    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def expand_dims(x, axis):
    return _tensor(x).unsqueeze(axis)


def sigmoid(x):
    return _tensor(x).float().sigmoid()


def softmax(x, axis=-1):
    return _tensor(x).float().softmax(axis)


def argmax(x, axis=None, keepdims=False):
    t = _tensor(x)
    return t.flatten().argmax() if axis is None else t.argmax(axis, keepdim=keepdims)


def convert_to_numpy(x):
    return _tensor(x).detach().cpu().numpy()


__all__ = ["expand_dims", "sigmoid", "softmax", "argmax", "convert_to_numpy"]


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"keras.ops.{name} is not in cnnkit.keras.ops; it has "
                         f"{', '.join(__all__)} (use torch or numpy for the rest)")
