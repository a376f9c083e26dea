"""keras.applications.resnet (and resnet50, which Keras exports with the same names)."""
from cnnkit.keras.applications.imagenet_utils import preprocess_input as _preprocess
from cnnkit.keras.applications.imagenet_utils import decode_predictions  # noqa: F401
from cnnkit.keras.applications.keras_model import as_keras
from cnnkit.model import applications

ResNet50 = as_keras(applications.ResNet50)


def preprocess_input(x, data_format=None):
    """'caffe' mode: RGB → BGR, minus the ImageNet mean per channel."""
    return _preprocess(x, data_format, mode="caffe")
