"""keras.applications.resnet50."""
from cnnkit.keras.applications.resnet import (ResNet50, decode_predictions,  # noqa: F401
                                              preprocess_input)
