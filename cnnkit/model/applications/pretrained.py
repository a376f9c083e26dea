"""The weights of an application: `weights=None` (random), a weights file (`PATH`: Keras's, or
PyTorch's from torchvision or timm, see torch_files.py), or `"imagenet"`: the file Keras
publishes for that network, downloaded once into cnnkit's cache (`$CNNKIT_DATA/models/`,
beside the datasets) through cnnkit.data.download, verified against the checksum Keras's own
source gives, resumed when a transfer drops.

KERAS_FILES is Keras's table (keras/src/applications/*.py, Keras 3.15): file name -> (URL,
checksum). Keras publishes MD5s; for MobileNetV2's files it publishes none, and, as Keras, they
are then taken unverified (a truncated transfer is still caught by its length). A mirror holding
the same files under the same names replaces Keras's storage with `CNNKIT_KERAS_MIRROR` (a base
URL: `$CNNKIT_KERAS_MIRROR/<file name>`). CHECKSUMS is the table checked: a caller serving files
of its own (a test, a private mirror of retrained weights) adds their checksums there.
"""
from __future__ import annotations

import os
from pathlib import Path

from cnnkit.errors import CnnkitError, clipped
from cnnkit.model.applications.torch_files import Source, is_torch_file, source_of

MIRROR_ENV = "CNNKIT_KERAS_MIRROR"
_STORAGE = "https://storage.googleapis.com/"
_APPS = _STORAGE + "tensorflow/keras-applications/"


def _table() -> dict:
    files = {"imagenet_class_index.json": (
        _STORAGE + "download.tensorflow.org/data/imagenet_class_index.json",
        "c2c37ea517e94d9795004a39431a14cb")}
    for base, stem, full, notop in (
            (_APPS + "vgg16/", "vgg16_weights_tf_dim_ordering_tf_kernels",
             "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
            (_APPS + "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels",
             "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626")):
        files[f"{stem}.h5"] = (base + f"{stem}.h5", full)
        files[f"{stem}_notop.h5"] = (base + f"{stem}_notop.h5", notop)
    efficientnet = _STORAGE + "keras-applications/"
    files["efficientnetb0.h5"] = (efficientnet + "efficientnetb0.h5",
                                  "902e53a9f72be733fc0bcb005b3ebbac")
    files["efficientnetb0_notop.h5"] = (efficientnet + "efficientnetb0_notop.h5",
                                        "50bc09e76180e00e4465e1a485ddc09d")
    for alpha in MOBILENET_ALPHAS:
        for rows in MOBILENET_SIZES:
            for suffix in (".h5", "_no_top.h5"):
                name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}{suffix}"
                files[name] = (_APPS + "mobilenet_v2/" + name, None)  # Keras gives no checksum
    return files


MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_SIZES = (96, 128, 160, 192, 224)
KERAS_FILES = _table()
CHECKSUMS = {name: checksum for name, (_, checksum) in KERAS_FILES.items()}


def keras_file(name: str, progress: bool = True) -> Path:
    """The cached path of the Keras file `name` (a key of KERAS_FILES), downloaded the first
    time (from $CNNKIT_KERAS_MIRROR when set), verified against CHECKSUMS[name]."""
    from cnnkit.data.download import download
    from cnnkit.data.mnist import cache_dir

    if name not in KERAS_FILES:
        raise CnnkitError(f"{clipped(name)} is not a file Keras publishes for the applications "
                          "cnnkit builds")
    mirror = os.environ.get(MIRROR_ENV)
    url = f"{mirror.rstrip('/')}/{name}" if mirror else KERAS_FILES[name][0]
    return download([url], cache_dir() / "models" / name, CHECKSUMS.get(name), progress=progress)


def imagenet_file(builder: str, include_top: bool, alpha=1.0, rows=224) -> str:
    """The name of the file Keras loads for `builder`(weights="imagenet")."""
    top = "" if include_top else ("_no_top" if builder == "MobileNetV2" else "_notop")
    if builder == "MobileNetV2":
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{top}.h5"
    if builder == "EfficientNetB0":
        return f"efficientnetb0{top}.h5"
    return f"{builder.lower()}_weights_tf_dim_ordering_tf_kernels{top}.h5"


def check_weights(builder: str, weights, include_top, classes, classifier_activation,
                  input_shape, default_size=224) -> None:
    """Keras's rules for `weights`: None, 'imagenet' or an existing file; ImageNet's top has
    1000 classes and the default input size; a pretrained top ends in softmax or nothing."""
    if weights is None:
        return
    if weights != "imagenet" and not (isinstance(weights, (str, os.PathLike))
                                      and Path(weights).is_file()):
        raise CnnkitError(f"{builder}: weights={clipped(weights)}; valid: None (random "
                          "initialization), 'imagenet', or the path of a Keras weights file "
                          "(.h5, .keras) or a PyTorch one (.safetensors, .pth, .pt, .bin)")
    if include_top and classifier_activation not in (None, "softmax"):
        raise CnnkitError(f"{builder}: classifier_activation={clipped(classifier_activation)} "
                          "with pretrained weights; valid: 'softmax' or None")
    if weights != "imagenet":
        return
    if include_top and classes != 1000:
        raise CnnkitError(f"{builder}: classes={clipped(classes)} with weights='imagenet' and "
                          "include_top=True; valid: 1000 (or include_top=False and a new head)")
    default = (default_size, default_size, 3)
    if input_shape is not None and tuple(input_shape)[-1] != 3:
        raise CnnkitError(f"{builder}: input_shape={clipped(input_shape)} with weights="
                          "'imagenet'; valid: 3 (RGB) channels")
    if include_top and input_shape is not None and tuple(input_shape) != default:
        raise CnnkitError(f"{builder}: input_shape={clipped(input_shape)} with weights="
                          f"'imagenet' and include_top=True; valid: {default}")


def weights_source(builder: str, weights) -> Source | None:
    """The PyTorch file `weights` names, read once (its network's padding, batch norm and
    preprocessing, which the builder follows); None for Keras's weights or none."""
    return source_of(builder, weights) if is_torch_file(weights) else None


def load_weights(model, path, source: Source | None = None) -> None:
    """Weights from a file into an application network: the one way in, for the builders'
    `weights=PATH` and for a backbone's `--weights FILE`. Keras's files (.h5, .weights.h5,
    .keras) load by Keras's layer names; PyTorch's state dicts (.safetensors, .pth, .pt, .bin)
    by torchvision's or timm's names, into a network built for that file (the builder with
    weights=PATH builds it), whose preprocessing becomes the model's. With include_top=False
    a whole network's file loads with its classifier skipped."""
    if not is_torch_file(path):
        from cnnkit.model.keras_writing import load_weights as load_keras_weights

        load_keras_weights(model, path)
        return
    from cnnkit.model.applications.torch_names import load_state

    load_state(model, source or source_of(None, path), str(path))


def with_weights(model, builder: str, weights, include_top: bool, source: Source | None = None,
                 **file_args):
    """`model` with `weights` loaded by layer name (None: as built); `source`: weights_source's
    answer for a PyTorch file, said in one line."""
    if weights is None:
        return model
    path = weights if weights != "imagenet" else keras_file(
        imagenet_file(builder, include_top, **file_args))
    load_weights(model, path, source)
    if source is not None:
        import sys

        print(f"cnnkit: {source.describe()}", file=sys.stderr)
    return model
