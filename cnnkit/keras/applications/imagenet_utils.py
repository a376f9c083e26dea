"""keras.applications.imagenet_utils.preprocess_input: pixels (0-255, RGB) as each family's
ImageNet training saw them. Pure numpy; returns a new float array (Keras's own also changes a
float input in place)."""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError, clipped
# the same constants as the layer that does this inside a model (PreprocessInput)
from cnnkit.layers.imagenet import CAFFE_MEAN_BGR, MODES, TORCH_MEAN, TORCH_STD
FORMATS = (None, "channels_last", "channels_first")


def preprocess_input(x, data_format=None, mode="caffe"):
    """'caffe': RGB → BGR, minus the ImageNet mean per channel, no scaling (VGG16, ResNet50);
    'tf': scaled to [-1, 1] (MobileNetV2); 'torch': scaled to [0, 1], then standardized with
    the ImageNet mean and std per channel."""
    if mode not in MODES:
        raise CnnkitError(f"preprocess_input: mode={clipped(mode)}; valid: {', '.join(MODES)}")
    if data_format not in FORMATS:
        raise CnnkitError(f"preprocess_input: data_format={clipped(data_format)}; valid: None, "
                          "'channels_last', 'channels_first'")
    x = np.asarray(x)
    x = x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)  # a copy
    if mode == "tf":
        return x / 127.5 - 1.0
    axis = 1 if data_format == "channels_first" and x.ndim == 4 else (
        0 if data_format == "channels_first" else -1)
    if x.ndim == 0 or x.shape[axis] != 3:
        raise CnnkitError(f"preprocess_input: an array of shape {x.shape} has no 3-channel "
                          f"axis ({data_format or 'channels_last'}); valid: RGB images")
    shape = [1] * x.ndim
    shape[axis] = 3
    if mode == "torch":
        mean, std = np.reshape(TORCH_MEAN, shape), np.reshape(TORCH_STD, shape)
        return ((x / 255.0 - mean) / std).astype(x.dtype)
    return (np.flip(x, axis) - np.reshape(CAFFE_MEAN_BGR, shape)).astype(x.dtype)


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each row of `preds` (N, 1000), best first, as Keras gives
    them: [(wordnet id, class name, score), ...] per image. The class index is the JSON file
    Keras publishes, downloaded once into cnnkit's cache (cnnkit.model.applications.pretrained)."""
    import json

    from cnnkit.model.applications.pretrained import keras_file

    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise CnnkitError(f"decode_predictions: predictions of shape {preds.shape}; valid: "
                          "(samples, 1000), an ImageNet top's output")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise CnnkitError(f"decode_predictions: top={clipped(top)}; valid: a positive integer")
    index = json.loads(keras_file("imagenet_class_index.json").read_text())
    results = []
    for row in preds:
        best = row.argsort()[-top:][::-1]
        results.append(sorted((tuple(index[str(i)]) + (row[i],) for i in best),
                              key=lambda r: r[2], reverse=True))
    return results
