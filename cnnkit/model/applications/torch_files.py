"""PyTorch weight files for the applications: a state dict read from `.safetensors`, or from a
`.pth`/`.pt`/`.bin` pickle with `torch.load(weights_only=True)` (tensors and plain containers
only: a pickle that would run code is refused before anything runs), and the network the keys
say it is (`Source`).

Where the architectures match, a source is one of Keras's networks trained elsewhere; what
differs is recorded in `Source` and followed by the builder, so the network predicts what the
file's own network predicts:
    torchvision vgg16            the same layers; PyTorch's preprocessing (ImageNet mean/std)
    torchvision mobilenet_v2     symmetric padding of the stride-2 windows, batch norm eps 1e-5
    torchvision efficientnet_b0  the same, with eps 1e-5
    timm efficientnet_b0         the same as torchvision's (timm names)
    timm tf_efficientnet_b0      TensorFlow's 'same' padding and eps 1e-3, as Keras's network
ResNet50 files (torchvision's and timm's) are ResNet v1.5 and do not fit Keras's v1: refused.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers.imagenet import TORCH_MEAN as IMAGENET_MEAN, TORCH_STD as IMAGENET_STD

TORCH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
TORCH_MOMENTUM = 0.9  # PyTorch's BatchNorm2d momentum=0.1, in Keras's sense (1 - 0.1)
SHOWN = 3  # keys named in a message


@dataclass(frozen=True)
class Source:
    """Where a PyTorch weights file comes from, and what its network does differently."""
    name: str                # "torchvision's mobilenet_v2"
    arch: str                # the name map (cnnkit.model.applications.torch_names.MAPS)
    builder: str             # the cnnkit builder whose network it fits
    torch_padding: bool      # stride-2 windows padded k//2 on every side (else TF's 'same')
    epsilon: float | None    # batch norm epsilon (None: a network without batch norm)
    mean: tuple = IMAGENET_MEAN  # preprocessing: (pixels / 255 - mean) / std
    std: tuple = IMAGENET_STD
    state: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def preprocessing(self) -> dict:
        """model.preprocessing (cnnkit's input contract) for this file's network."""
        return {"normalize": "standardize", "mean": list(self.mean), "std": list(self.std)}

    def describe(self) -> str:
        """One line for the user when the network is built."""
        pad = ("Keras's layers" if self.arch == "vgg16"  # no stride-2 convolution to pad
               else "PyTorch's symmetric padding" if self.torch_padding
               else "TensorFlow's 'same' padding, as Keras's")
        bn = "" if self.epsilon is None else f", batch norm epsilon {self.epsilon:g}"
        torch_mode = self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD
        pre = ("PyTorch's preprocessing (ImageNet mean and std: imagenet_utils.preprocess_input"
               "(x, mode='torch'))" if torch_mode else
               f"preprocessing (pixels / 255 - {list(self.mean)}) / {list(self.std)}")
        return f"weights from {self.name}: {pad}{bn} and {pre}"


def is_torch_file(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in TORCH_SUFFIXES


def read_state_dict(path) -> dict:
    """{name: tensor} from a PyTorch weights file; a training checkpoint holding the state dict
    under "state_dict" or "model" is unwrapped, and DataParallel's "module." prefix dropped."""
    import torch

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from cnnkit.io.tensors import read_safetensors  # the one reader: header checked first

        state = read_safetensors(path, "PyTorch weights")
    else:
        state = _load_pickle(torch, path)
    while isinstance(state, dict) and any(isinstance(state.get(k), dict)
                                          for k in ("state_dict", "model")):
        state = next(state[k] for k in ("state_dict", "model") if isinstance(state.get(k), dict))
    if not isinstance(state, dict) or not state:
        raise CnnkitError(f"{path}: holds {type(state).__name__}, not a state dict ({{name: "
                          "tensor}}, as model.state_dict() gives)")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise CnnkitError(f"{path}: entries that are not named tensors: "
                          f"{', '.join(map(repr, bad[:SHOWN]))}; valid: a state dict")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_pickle(torch, path: Path):
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only's unpickler stops at the first global it does not allow: nothing ran
        why = str(e).split("\n")[-1].strip() or str(e).split("\n")[0]
        raise CnnkitError(f"{path}: refused: its pickle needs more than tensors and plain "
                          f"containers ({clipped(why, quote=False)}), which could run code; "
                          "cnnkit reads .pth files with torch.load(weights_only=True): save "
                          "model.state_dict(), or use .safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CnnkitError(f"{path}: not a readable PyTorch file "
                          f"({clipped(first, quote=False)})") from None


RESNET_V15 = ("torchvision's and timm's resnet50 are ResNet v1.5 (stride 2 on the 3x3 "
              "convolution, no convolution biases) and Keras's ResNet50, which cnnkit builds, "
              "is v1 (stride 2 on the first 1x1 convolution, with biases): the weights do not fit")


def source_of(builder: str | None, path) -> Source:
    """The network the file's keys name, checked against the one `builder` makes (if given)."""
    state = read_state_dict(path)
    if "layer1.0.conv1.weight" in state and "conv1.weight" in state:
        raise CnnkitError(f"{builder or 'weights'}: {path}: {RESNET_V15}")
    found = _recognise(state, path)
    if found is None:
        raise CnnkitError(
            f"{builder or 'weights'}: {path}: keys {', '.join(list(state)[:SHOWN])}, ... name "
            "none of the networks cnnkit maps; valid: torchvision's vgg16, mobilenet_v2, "
            "efficientnet_b0, timm's efficientnet_b0 or tf_efficientnet_b0")
    source = Source(**found, state=state)
    if builder is not None and source.builder != builder:
        raise CnnkitError(f"{builder}: {path} holds {source.name} weights; build "
                          f"{source.builder}(weights=...) for them")
    return source


def _recognise(state: dict, path) -> dict | None:
    """Source's fields from the key names (each library names its modules its own way)."""
    if "features.0.weight" in state and "features.1.running_mean" not in state:  # not vgg16_bn
        return dict(name="torchvision's vgg16", arch="vgg16", builder="VGG16",
                    torch_padding=True, epsilon=None)
    if "features.0.0.weight" in state and "features.1.conv.0.0.weight" in state:
        return dict(name="torchvision's mobilenet_v2", arch="mobilenet_v2",
                    builder="MobileNetV2", torch_padding=True, epsilon=1e-5)
    if "features.0.0.weight" in state and "features.1.0.block.0.0.weight" in state:
        return dict(name="torchvision's efficientnet_b0", arch="efficientnet_b0",
                    builder="EfficientNetB0", torch_padding=True, epsilon=1e-5)
    if "conv_stem.weight" in state and "blocks.0.0.conv_dw.weight" in state:
        return _timm_efficientnet(path)
    return None


def _timm_efficientnet(path) -> dict:
    """timm's efficientnet_b0 and tf_efficientnet_b0 share their key names but not padding and
    epsilon: the model's name comes from timm's config.json beside the file (the Hugging Face
    hub's layout), else from the file's name."""
    path = Path(path)
    config, name, mean, std = path.with_name("config.json"), path.name, IMAGENET_MEAN, IMAGENET_STD
    if config.is_file():
        try:
            cfg = json.loads(config.read_text())
            name = str(cfg.get("architecture", name))
            pre = cfg.get("pretrained_cfg", cfg)
            mean, std = tuple(pre.get("mean", mean)), tuple(pre.get("std", std))
        except (ValueError, AttributeError, TypeError) as e:
            raise CnnkitError(f"{config}: not timm's model config "
                              f"({clipped(e, quote=False)})") from None
    arch = name.split(".")[0]
    if "tf_efficientnet_b0" in arch:
        return dict(name="timm's tf_efficientnet_b0", arch="timm_efficientnet",
                    builder="EfficientNetB0", torch_padding=False, epsilon=1e-3, mean=mean,
                    std=std)
    if "efficientnet_b0" in arch:
        return dict(name="timm's efficientnet_b0", arch="timm_efficientnet",
                    builder="EfficientNetB0", torch_padding=True, epsilon=1e-5, mean=mean,
                    std=std)
    raise CnnkitError(f"{path}: timm's efficientnet_b0 and tf_efficientnet_b0 share these "
                      "tensor names but pad and normalize differently; valid: timm's "
                      "config.json beside the file (its 'architecture'), or the model's name "
                      "in the file's (tf_efficientnet_b0.safetensors)")
