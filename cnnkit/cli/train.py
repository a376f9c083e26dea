"""`cnnkit train`, `cnnkit evaluate`, `cnnkit predict`."""
from __future__ import annotations

import argparse

AUGMENT_FLAGS = [  # Keras ImageDataGenerator names
    ("rotation_range", float, "degrees"), ("width_shift_range", float, "fraction of width"),
    ("height_shift_range", float, "fraction of height"), ("shear_range", float, "degrees"),
    ("zoom_range", float, "±fraction"),
]


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model; writes a run directory with a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--recipe", help="a seed's whole recipe: seed000, seed002, seed003, seed004, "
                   "fast, best (options below override it)")
    g.add_argument("--model", help="preset name, model file (.yaml/.toml/.json) or saved model dir")
    g.add_argument("--dataset", help="mnist, fashion-mnist, kmnist, cifar10, digits, folder:PATH, npz:PATH")
    g.add_argument("--data-dir", help="where the dataset's files are (searched first)")
    g.add_argument("--limit", type=int, help="use only the first N training images (quick trials)")
    g.add_argument("--val-split", type=float, help="fraction of training data held out, stratified")
    g.add_argument("--init-from", metavar="MODEL_DIR", help="start from trained weights (transfer)")
    g.add_argument("--freeze", action="store_true", help="with --init-from: keep the convolutional "
                   "part fixed, train the head")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", help="sgd, adagrad, rmsprop, adam, adamw")
    g.add_argument("--lr", type=float, help="learning rate (default: Keras's for the optimizer)")
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", action="store_true", default=None)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--loss", help="sparse_categorical_crossentropy, categorical_crossentropy, "
                   "binary_crossentropy, mse")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--schedule", help="constant, step, cosine, onecycle")
    g.add_argument("--clip-norm", type=float, help="clip the gradient norm to this")
    g.add_argument("--ema", type=float, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999): "
                   "validation, checkpoints and the final model use the average")
    g.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without val_loss improvement; restore the best")
    g.add_argument("--normalize", help="unit (pixels/255) or standardize")
    g = p.add_argument_group("augmentation (Keras ImageDataGenerator names)")
    for name, typ, unit in AUGMENT_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=typ, help=unit)
    g.add_argument("--horizontal-flip", action="store_true", default=None)
    g.add_argument("--vertical-flip", action="store_true", default=None)
    g.add_argument("--fill-mode", help="nearest, constant, reflect, wrap")
    g.add_argument("--test-time-flip", action="store_true", default=None,
                   help="evaluate and predict on each image and its mirror image, averaged "
                   "(for classes that mirroring does not change; pair with --horizontal-flip)")
    g = p.add_argument_group("run")
    g.add_argument("--out", help="run directory (default: runs/<model>-<dataset>-<time>)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    g.add_argument("--seed", type=int, help="makes a CPU run reproducible to the last digit")
    g.add_argument("--device", help="auto, cpu or cuda")
    g.add_argument("--precision", help="auto (bf16 where the CPU has it), bf16 or fp32")
    g.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files to RUN/tensorboard")
    g.add_argument("--dry-run", action="store_true", default=None, help="one batch per epoch")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss, accuracy, per-class report, confusion matrix")
    p.add_argument("model", metavar="MODEL_OR_RUN")
    p.add_argument("--dataset", help="default: the dataset the model was trained on")
    p.add_argument("--data-dir")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--out", help="directory for confusion_matrix.png and mistakes.png "
                   "(default: beside the model)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top classes for image files or a folder")
    p.add_argument("model", metavar="MODEL_OR_RUN")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="OUT_PNG", help="each image beside a bar chart of its "
                   "class probabilities")
    p.set_defaults(func=cmd_predict)


def cmd_train(args) -> int:
    from cnnkit.runs.run import train_from_args

    train_from_args(args)
    return 0


def cmd_evaluate(args) -> int:
    from cnnkit.cli.inspect import evaluate_command

    return evaluate_command(args)


def cmd_predict(args) -> int:
    from cnnkit.cli.inspect import predict_command

    return predict_command(args)
