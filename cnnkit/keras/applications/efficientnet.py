"""keras.applications.efficientnet."""
from cnnkit.keras.applications.imagenet_utils import decode_predictions  # noqa: F401
from cnnkit.keras.applications.keras_model import as_keras
from cnnkit.model import applications

EfficientNetB0 = as_keras(applications.EfficientNetB0)


def preprocess_input(x, data_format=None):
    """The input as given: EfficientNet scales its 0-255 pixels itself (its first layers,
    Rescaling and Normalization), so Keras's function returns `x` unchanged."""
    return x
