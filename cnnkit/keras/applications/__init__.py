"""keras.applications: VGG16, ResNet50, MobileNetV2 and EfficientNetB0 as cnnkit.keras models
(compile, fit, predict, summary as Keras's), built by cnnkit.model.applications with Keras's
layer names, with `weights=None`, 'imagenet' (Keras's published files) or the path of a Keras
weights file or a PyTorch one (torchvision's or timm's state dict; the model then keeps that
network's preprocessing, ImageNet mean/std). Keras's submodules hold each family's builder,
`preprocess_input` and `decode_predictions`: `applications.resnet50.ResNet50`,
`applications.mobilenet_v2...`."""
from cnnkit.keras.applications import (efficientnet, imagenet_utils, mobilenet_v2, resnet,  # noqa: F401
                                       resnet50, vgg16)
from cnnkit.keras.applications.efficientnet import EfficientNetB0
from cnnkit.keras.applications.mobilenet_v2 import MobileNetV2
from cnnkit.keras.applications.resnet import ResNet50
from cnnkit.keras.applications.vgg16 import VGG16

__all__ = ["VGG16", "ResNet50", "MobileNetV2", "EfficientNetB0"]
