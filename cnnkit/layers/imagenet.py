"""PreprocessInput: keras.applications' `preprocess_input` as the first layer of a model, so the
model takes raw 0-255 RGB pixels (as a Rescaling-first model does: cnnkit.model.inputs) and
predict, evaluate, serve and ONNX export need nothing else. cnnkit.keras's `preprocess_input`
functions compute the same numbers on arrays, from the constants here."""
from __future__ import annotations

from cnnkit.layers.core import _NoWeights
from cnnkit.layers.registry import register_layer

MODES = ("caffe", "tf", "torch")  # keras.applications.imagenet_utils' names
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EXPLAINED = {
    "caffe": "RGB -> BGR, minus ImageNet's mean per channel (103.939, 116.779, 123.68)",
    "tf": "x / 127.5 - 1: pixels to [-1, 1]",
    "torch": "x / 255, then standardized with ImageNet's mean and std per channel",
}


@register_layer
class PreprocessInput(_NoWeights):
    """`mode`: 'caffe' (VGG16, ResNet50), 'tf' (MobileNetV2) or 'torch'; on 3-channel images."""

    base_name = "preprocess_input"

    def __init__(self, mode="caffe", name=None):
        super().__init__(name)
        if mode not in MODES:
            raise self._error(f"mode={mode!r} is not supported; valid: "
                              f"{', '.join(map(repr, MODES))}")
        self.mode = mode

    def get_config(self):
        return {"mode": self.mode}

    def output_shape(self, shape):
        if len(shape) != 3 or shape[-1] != 3:
            raise self._error(f"takes RGB images (H, W, 3); received {tuple(shape)}")
        return shape

    def explain(self, shape, out):
        return [f"{EXPLAINED[self.mode]}; no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        if self.mode == "caffe":
            return pnn.Standardize(CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), bgr=True)
        if self.mode == "tf":
            return pnn.Standardize((127.5,) * 3, (127.5,) * 3)
        return pnn.Standardize([255 * m for m in TORCH_MEAN], [255 * s for s in TORCH_STD])
