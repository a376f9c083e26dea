"""keras.applications.resnet50."""
from cnnkit.keras.applications.resnet import ResNet50, preprocess_input  # noqa: F401
