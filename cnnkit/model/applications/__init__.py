"""keras.applications' networks built from cnnkit's layers: graph models whose layer names,
order, shapes and parameter counts are Keras's own (so Keras's weight files map one to one).

    vgg.py           VGG16
    resnet.py        ResNet50
    mobilenet_v2.py  MobileNetV2
    efficientnet.py  EfficientNetB0
    common.py        the input, the classifier top or pooling, the checks they share
    pretrained.py    weights=None | PATH | 'imagenet' (Keras's published files, downloaded);
                     load_weights(model, path), the one way a weights file goes in
    torch_files.py   PyTorch state dicts (.safetensors, .pth read weights_only) and their source
    torch_names.py   torchvision's and timm's names for Keras's layers, and the copy
"""
from cnnkit.model.applications.efficientnet import EfficientNetB0
from cnnkit.model.applications.mobilenet_v2 import MobileNetV2
from cnnkit.model.applications.pretrained import load_weights
from cnnkit.model.applications.resnet import ResNet50
from cnnkit.model.applications.vgg import VGG16

__all__ = ["VGG16", "ResNet50", "MobileNetV2", "EfficientNetB0", "load_weights"]
