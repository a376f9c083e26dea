"""keras.applications.mobilenet_v2."""
from cnnkit.keras.applications.imagenet_utils import preprocess_input as _preprocess
from cnnkit.keras.applications.imagenet_utils import decode_predictions  # noqa: F401
from cnnkit.keras.applications.keras_model import as_keras
from cnnkit.model import applications

MobileNetV2 = as_keras(applications.MobileNetV2)


def preprocess_input(x, data_format=None):
    """'tf' mode: pixels scaled to [-1, 1]."""
    return _preprocess(x, data_format, mode="tf")
