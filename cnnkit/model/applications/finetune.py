"""A pretrained backbone with a new head for a dataset's classes (`cnnkit train --backbone`):

    Input (H, W, 3) raw pixels -> PreprocessInput (the family's preprocess_input)
      -> the application (include_top=False, pooling='avg'), called with training=False
      -> Dropout(0.2) -> Dense(classes, softmax) "predictions"

A pretrained backbone runs in inference mode always (keras.io's transfer-learning guide:
`base_model(x, training=False)`): its batch norm keeps its moving statistics, also once its
blocks are unfrozen for fine-tuning. With `weights='none'` there are no statistics to keep: the
backbone is called as any layer, and its batch norm learns (a frozen block's stays as it is). The family's preprocessing is the model's first layer, so the model
takes 0-255 pixels like every cnnkit model and predict, serve and export need nothing else.
"""
from __future__ import annotations

from cnnkit.errors import CnnkitError

# backbone name -> (builder, preprocess_input mode or None where the network scales itself)
FAMILIES = {"mobilenetv2": ("MobileNetV2", "tf"), "resnet50": ("ResNet50", "caffe"),
            "vgg16": ("VGG16", "caffe"), "efficientnetb0": ("EfficientNetB0", None)}
DROPOUT = 0.2  # keras.io's guide


def backbone_names() -> list[str]:
    """Every --backbone name: the four families, and MobileNetV2 at Keras's published widths
    (`mobilenetv2-0.35`; `mobilenetv2` is alpha 1.0)."""
    from cnnkit.model.applications.pretrained import MOBILENET_ALPHAS

    return list(FAMILIES) + [f"mobilenetv2-{a:g}" for a in MOBILENET_ALPHAS if a != 1.0]


def check_backbone(name) -> tuple[str, dict]:
    """(family, builder arguments) for a backbone name; one line naming the valid ones."""
    if name not in backbone_names():
        raise CnnkitError(f"backbone={name!r} is not known; valid: "
                          f"{', '.join(backbone_names())}", option="backbone", value=name)
    fam, _, alpha = name.partition("-")
    return fam, ({"alpha": float(alpha)} if alpha else {})


def weights_argument(weights):
    """RunSpec's `weights` ('imagenet', 'none' or a file) as the builders take it."""
    return None if weights in (None, "none") else weights


def finetune_model(backbone: str, weights, input_shape, classes: int):
    """The fine-tuning model (see the module's note) for `classes` classes; `weights`:
    'imagenet', 'none' or a weights file, loaded by the application's one weights path."""
    from cnnkit.layers import Dense, Dropout, Input, PreprocessInput
    from cnnkit.model import applications
    from cnnkit.model.graph import Functional, nested

    fam, options = check_backbone(backbone)
    builder, mode = FAMILIES[fam]
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise CnnkitError(f"--backbone {backbone} takes RGB images; the data's are "
                          f"{tuple(input_shape)} (H, W, C)", option="backbone", value=backbone)
    base = getattr(applications, builder)(
        include_top=False, weights=weights_argument(weights), input_shape=tuple(input_shape),
        pooling="avg", **options)
    inputs = Input(tuple(input_shape))
    x = _preprocess(base, mode)(inputs) if mode or _torch_file(base) else inputs
    # pretrained: batch norm in inference mode, frozen or not; random weights have no
    # statistics worth keeping, so there the backbone's batch norm learns them as usual
    x = nested(base, x, training=False if weights_argument(weights) is not None else None)
    x = Dropout(DROPOUT, name="head_dropout")(x)
    outputs = Dense(classes, activation="softmax", name="predictions")(x)
    return Functional(inputs, outputs, name=f"{fam}_finetune")


def _torch_file(base) -> bool:
    """Whether `base` was built for a PyTorch weights file: its network takes pixels standardized
    with the file's mean and std (cnnkit.model.applications.torch_files), whatever the family."""
    return (base.preprocessing or {}).get("normalize") == "standardize"


def _preprocess(base, mode):
    """The first layer: the family's preprocess_input for Keras's weights; for a PyTorch file's
    network, its own standardization (torch's ImageNet mean/std, or the file's own)."""
    from cnnkit.layers import Normalization, PreprocessInput
    from cnnkit.layers.imagenet import TORCH_MEAN, TORCH_STD

    if not _torch_file(base):
        return PreprocessInput(mode)
    mean, std = base.preprocessing["mean"], base.preprocessing["std"]
    if tuple(mean) == TORCH_MEAN and tuple(std) == TORCH_STD:
        return PreprocessInput("torch")
    return Normalization(mean=[255 * m for m in mean], variance=[(255 * s) ** 2 for s in std],
                         name="preprocess_input")
