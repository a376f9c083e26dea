"""`cnnkit train`, `cnnkit evaluate`, `cnnkit predict`.

`train` only turns flags into a RunSpec (over `--config FILE` where given) and calls
`cnnkit.run`; errors about one option come back in the library's words (`val_split=1.5`) and
are restated here as the flag the user typed (`--val-split 1.5`).
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from cnnkit.cli import flags
from cnnkit.cli.inspect import evaluate_command as cmd_evaluate, predict_command as cmd_predict

AUGMENT_FLAGS = [  # Keras ImageDataGenerator names
    ("rotation_range", float, "random rotations up to this many degrees"),
    ("width_shift_range", float, "random horizontal shifts: a fraction of the width, or pixels if >= 1"),
    ("height_shift_range", float, "random vertical shifts: a fraction of the height, or pixels if >= 1"),
    ("shear_range", float, "random shear up to this many degrees"),
    ("zoom_range", float, "random zoom in [1 - z, 1 + z]"),
]
AUGMENT_SWITCHES = [("horizontal_flip", "mirror half the images left-right"),
                    ("vertical_flip", "flip half the images upside down")]


def resume_flags() -> tuple[str, ...]:
    """What `--resume` may be given with: the run options that may change on resume
    (TrainConfig's RESUMABLE, the one list; verbose as --quiet, and not --out: the run is
    --resume's directory), and --nproc, which cnnkit.run takes beside the spec on resume too."""
    from cnnkit.train.config import RESUMABLE

    return tuple("quiet" if k == "verbose" else k for k in RESUMABLE if k != "out") + ("nproc",)


def _listed(names) -> str:
    return ", ".join(flag(k) for k in names)


def _defaults() -> dict:
    from cnnkit.train.config import TrainConfig

    return TrainConfig().to_dict()


def register(sub) -> None:
    from cnnkit.model.applications.finetune import backbone_names
    from cnnkit.runs.recipes import RECIPES
    from cnnkit.train.config import LOSSES, OPTIMIZERS, SCHEDULES  # the registries' names
    from cnnkit.train.optimizers import REGISTRY, takes

    d = _defaults()
    p = sub.add_parser(
        "train", help="train a model; writes a run directory with a report",
        description=textwrap.fill(
            "Train a model and write a run directory (config.json, history.csv, best/ and "
            "last/ models, metrics.json, plots, report.md). A --recipe or a --config file sets "
            "its own values for any option below; flags given here override both, and the "
            "defaults shown apply to what neither sets.", 80),
        epilog="examples:\n  cnnkit train --recipe fast\n  cnnkit train --model seed002-fashion "
        "--dataset fashion-mnist --epochs 20 --val-split 0.2 --early-stopping 2\n"
        "  cnnkit train --config runs/a/config.json --seed 2 --out runs/b\n"
        "  cnnkit train --resume runs/a --epochs 20\n"
        "  cnnkit train --recipe finetune --dataset folder:photos  (pretrained MobileNetV2)\n"
        "  cnnkit train --recipe fast --nproc 2        (2 data-parallel processes here)\n"
        "  torchrun --nnodes 2 --nproc-per-node 4 --rdzv-endpoint HOST:PORT -m cnnkit train "
        "--recipe fast\n                                              (the same, on 2 machines)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--recipe", help=f"a whole recipe: {', '.join(RECIPES)} (seedNNN: the seed "
                   "tutorials'; the others cnnkit's)")
    g.add_argument("--config", metavar="FILE", help="a RunSpec as YAML, TOML or JSON (a run's "
                   "own config.json too): repeat any run")
    g.add_argument("--model", help="preset name, model file (.yaml/.toml/.json) or saved model dir")
    flags.add(g, "--dataset")
    flags.add(g, "--data-dir")
    g.add_argument("--limit", type=int, metavar="N",
                   help="use only N training images (quick trials; default: all)")
    g.add_argument("--val-split", type=float, metavar="F", help="fraction of the training data "
                   "held out for validation, stratified; 0: none (default: 0)")
    add_image_flags(g)
    add_class_weight_flag(g)
    g.add_argument("--sampler", metavar="balanced", help="balanced: each epoch draws every "
                   "class equally often (rare classes' images repeat) (default: a shuffle)")
    g.add_argument("--init-from", metavar="MODEL_DIR", help="start from trained weights (transfer)")
    g.add_argument("--freeze", action="store_true", default=None, help="with --init-from: keep "
                   "the convolutional part fixed, train the head; with --backbone: the whole "
                   "backbone, all run")
    g = p.add_argument_group("fine-tune a pretrained network (--recipe finetune: Chollet's "
                             "two phases)")
    g.add_argument("--backbone", help=f"{', '.join(backbone_names())}: the network without its "
                   "top, its preprocessing inside the model, and a new head for the dataset's "
                   "classes, at --image-size or the data's own size (use it instead of "
                   "--model)")
    g.add_argument("--weights", metavar="imagenet|none|FILE", help="the backbone's weights: "
                   "Keras's published ImageNet files (downloaded once), none (random), or a "
                   "weights file (default: imagenet)")
    g.add_argument("--head-epochs", type=int, metavar="N", help="first N epochs: the head only, "
                   "the backbone frozen (default: 0)")
    g.add_argument("--unfreeze", metavar="N|all|BLOCKS", help="after --head-epochs, the backbone "
                   "blocks that train too: the top N, all, or names by Keras's layers "
                   "(block_16,block_15; conv5_block3; block5; block7a) (default: all)")
    g.add_argument("--finetune-lr-factor", type=float, metavar="F", help="the learning rate "
                   "after --head-epochs, times F (default: 0.1 after a head phase, else 1)")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, help=f"passes over the training data (default: {d['epochs']})")
    g.add_argument("--batch-size", type=int, help=f"images per step (default: {d['batch_size']})")
    g.add_argument("--optimizer", help=f"{', '.join(OPTIMIZERS)}: Keras's update rules and "
                   f"defaults (default: {d['optimizer']})")
    rates = ", ".join(f"{n} {c().learning_rate:g}" for n, c in REGISTRY.items())
    g.add_argument("--lr", type=rate_or_find, metavar="LR|find",
                   help=f"learning rate (default: Keras's for the optimizer: {rates}); find: "
                   "the learning-rate finder's suggestion (cnnkit lr-find), recorded in "
                   "config.json with its plot lr_find.png")
    g.add_argument("--momentum", type=float, help=f"{' and '.join(takes('momentum'))} "
                   f"(default: {d['momentum']})")
    g.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (sgd)")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay (default: 0; "
                   "0.004 for adamw, as Keras)")
    g.add_argument("--loss", help=f"{', '.join(LOSSES)} (default: {d['loss']})")
    g.add_argument("--label-smoothing", type=float, help=f"(default: {d['label_smoothing']})")
    g.add_argument("--schedule", help=f"{', '.join(SCHEDULES)} (default: {d['schedule']})")
    g.add_argument("--clip-norm", type=float, help="clip the gradient norm to this (default: off)")
    g.add_argument("--ema", type=float, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999): "
                   "validation, checkpoints and the final model use the average (default: off)")
    g.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without val_loss improvement, restoring the "
                   "best weights (default: off)")
    g.add_argument("--normalize", help=f"unit (pixels/255) or standardize (default: {d['normalize']})")
    g = p.add_argument_group("augmentation (Keras ImageDataGenerator names; default: none)")
    for name, typ, text in AUGMENT_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=typ, help=text)
    for name, text in AUGMENT_SWITCHES:
        g.add_argument("--" + name.replace("_", "-"), action="store_true", default=None, help=text)
    g.add_argument("--fill-mode", help="nearest, constant, reflect, wrap (default: nearest)")
    g.add_argument("--mixup", type=float, metavar="ALPHA", help="blend each image with "
                   "another, labels in the same proportion, lam ~ Beta(ALPHA, ALPHA) per batch "
                   "(e.g. 0.2; default: 0, off)")
    g.add_argument("--cutmix", type=float, metavar="ALPHA", help="paste a box from another "
                   "image, labels by its area, lam ~ Beta(ALPHA, ALPHA) (e.g. 1.0; with "
                   "--mixup: one of the two per batch; default: 0, off)")
    g.add_argument("--random-erasing", type=float, metavar="P", help="replace a random box of "
                   "each image by noise with probability P (e.g. 0.25; default: 0, off)")
    g.add_argument("--test-time-flip", action="store_true", default=None,
                   help="evaluate and predict on each image and its mirror image, averaged "
                   "(for classes that mirroring does not change; pair with --horizontal-flip)")
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="DIR", help="the run directory to write (default: "
                   "runs/<model>-<dataset>-<time>)")
    g.add_argument("--artifacts", help="what the run writes: full (everything), metrics "
                   "(config, history, metrics, state) or none (default: full)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly; "
                   f"only {_listed(resume_flags())} may be given with it")
    flags.add(g, "--seed", ": makes a CPU run reproducible to the last digit (default: a "
              "random seed, recorded)", type=int)
    g.add_argument("--device", help=f"auto, cpu or cuda (default: {d['device']})")
    g.add_argument("--precision", help="auto (bf16 where the CPU or GPU has native bf16), "
                   "bf16, fp16 (with loss scaling; for GPUs without bf16) or fp32 "
                   f"(default: {d['precision']})")
    flags.add(g, "--threads", ": auto measures a few steps with all the CPUs this process "
                   "may use and with one, keeps the faster, and drops to one when another "
                   "program slows the steps down; N fixes the count (bit-exact reruns) "
                   "(default: auto, or CNNKIT_THREADS)")
    g.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files to RUN/tensorboard")
    g.add_argument("--dry-run", action="store_true", default=None, help="one batch per epoch")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")
    g.add_argument("--folds", type=int, metavar="K", help="k-fold cross-validation instead of "
                   "one run: the same as cnnkit cv --folds K (default: off)")
    g = p.add_argument_group("several processes (torch.distributed: gloo on CPU, NCCL on CUDA)")
    g.add_argument("--nproc", type=int, metavar="N", help="train in N data-parallel processes "
                   "on this machine (under torchrun: torchrun's --nproc-per-node instead); "
                   "a resumed run keeps its own (default: 1)")
    g.add_argument("--sync-bn", action="store_true", default=None, help="batch norm statistics "
                   "over the global batch, not each process's part (SyncBatchNorm)")
    g.add_argument("--batch-size-per-process", type=int, metavar="B", help="each process's "
                   "batch: the global batch is B x processes (default: --batch-size is the "
                   "global batch, split over the processes)")
    g.add_argument("--scale-lr", metavar="none|linear", help="linear: the learning rate times "
                   "the processes, for a global batch that grows with them (Goyal et al. 2017) "
                   "(default: none)")
    g.add_argument("--warmup-epochs", type=int, metavar="E", help="with --scale-lr linear: ramp "
                   "from the unscaled rate to the scaled one over E epochs (default: 0)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss, accuracy, per-class report, confusion matrix")
    flags.add(p, "MODEL_OR_RUN")
    flags.add(p, "--dataset", " (default: the dataset the model was trained on)")
    flags.add(p, "--data-dir")
    p.add_argument("--split", default="test", choices=["test", "train"], metavar="test|train",
                   help="the split to evaluate on (default: test)")
    p.add_argument("--out", metavar="DIR", help="the folder to write confusion_matrix.png and "
                   "mistakes.png to (default: RUN/evaluate-<split> for a run, else "
                   f"{flags.OUT_ROOT}/evaluate-<model>)")
    flags.add(p, "--json", " instead of tables", action="store_true")
    p.add_argument("--device", default="auto", help="for --runtime torch: auto, cpu or cuda")
    add_runtime_flags(p, "onnx from 10,000 images on (a test split of the MNIST family), "
                      "else torch; an .onnx file: onnx")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top classes for image files, a folder, or a CSV of "
                       "pixel rows")
    flags.add(p, "MODEL_OR_RUN")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files, folders, or one "
                   "CSV of pixel rows (Kaggle's test.csv)")
    p.add_argument("--top-k", type=int, default=3, metavar="K",
                   help="classes listed per image (default: 3)")
    flags.add(p, "--json", " instead of tables", action="store_true")
    p.add_argument("--plot", metavar="OUT_PNG", help="each image beside a bar chart of its "
                   "class probabilities")
    p.add_argument("--submission", metavar="OUT_CSV", help="write Kaggle's answer file: "
                   "ImageId,Label, one row per image (a test.csv's rows) from ImageId 1")
    add_runtime_flags(p, "onnx for 10,000 images or more, else torch (onnx costs ~1 s to "
                      "start); an .onnx file: onnx")
    p.set_defaults(func=cmd_predict)


def add_image_flags(g) -> None:
    """--image-size and --channels (RunSpec's image_size and channels), for train, cv and tune."""
    g.add_argument("--image-size", metavar="HxW", help="resize every image to HxW, or NxN for "
                   "one number N (e.g. 160 for a pretrained backbone); the model is built for "
                   "it and predict, serve and export resize the same way (default: the data's "
                   "own size; a folder's most common one)")
    g.add_argument("--channels", type=int, metavar="1|3", help="convert every image to 1 "
                   "(grayscale) or 3 (RGB) channels (default: the data's own; a folder is gray "
                   "only if every image is)")
    add_table_flags(g)


def add_table_flags(g) -> None:
    """--label-column and --image-root: a csv:, parquet: or hf: table's columns."""
    g.add_argument("--label-column", metavar="NAME", help="a csv:, parquet: or hf: table's "
                   "label column (default: label)")
    g.add_argument("--image-root", metavar="DIR", help="where a csv: table's file column finds "
                   "its images (default: the table's folder)")


def add_class_weight_flag(g) -> None:
    """--class-weight (RunSpec's class_weight), for train, cv and tune."""
    g.add_argument("--class-weight", metavar="balanced|FILE", help="weigh each image's loss by "
                   "its class: balanced (n / (classes x the class's images), scikit-learn's), "
                   'or a JSON file {"class name or id": weight} (others 1); recorded in '
                   "config.json (default: none)")


def with_default_recipe(spec, quiet: bool):
    """`cnnkit train --dataset X` alone trains the fast recipe's model on X, and says so
    first: one word to start, every option still overriding the recipe's. A --backbone is a
    model of its own."""
    if spec.model is not None or spec.recipe is not None or spec.backbone is not None \
            or not spec.dataset:
        return spec
    from cnnkit.runs.recipes import get_recipe

    spec = spec.replace(recipe="fast")
    spec.resolved()  # a bad option is the only line, before this one
    if not quiet:
        print(f"No --model or --recipe given: training the fast recipe (its model "
              f"{get_recipe('fast').model}, as --recipe fast) on {spec.dataset}")
    return spec


def add_runtime_flags(p, auto: str) -> None:
    """--runtime and --threads: MODEL_OR_RUN may then be an .onnx file too."""
    flags.add(p, "--runtime", f"; auto: {auto} (default: auto)", default="auto")
    flags.add(p, "--threads", ": onnx intra-op threads, or torch.set_num_threads; auto: the "
              "cores this process may use that are idle when it starts, or CNNKIT_THREADS "
              "(default: auto)", type=flags.threads)


def rate_or_find(text: str):
    """--lr: a number, or 'find'."""
    if text == "find":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'find'") from None


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def spec_from_args(args):
    """The RunSpec the flags describe, over --config's where given."""
    from cnnkit.runs.spec import RunSpec

    base = RunSpec.from_file(args.config).explicit() if args.config else {}
    fields = set(RunSpec.fields())
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    augment = {name: getattr(args, name) for name, *_ in AUGMENT_FLAGS + AUGMENT_SWITCHES
               if getattr(args, name) is not None}
    if args.fill_mode is not None:
        augment["fill_mode"] = args.fill_mode
    if augment:
        given["augment"] = {**(base.get("augment") or {}), **augment}
    if args.quiet:
        given["verbose"] = 0
    elif "verbose" not in base and not sys.stdout.isatty():
        given["verbose"] = 2  # a pipe or a file: one line per epoch, no bar
    return RunSpec(**{**base, **given})


def cmd_train(args) -> int:
    from cnnkit.errors import CnnkitError
    from cnnkit.runs.run import run

    if args.folds is not None:
        from cnnkit.cli.tune import cmd_cv

        if args.nproc not in (None, 1):
            raise CnnkitError("--nproc with --folds: cross-validation runs its folds in one "
                              "process each; drop --nproc")
        return cmd_cv(args)
    command = ["cnnkit", *getattr(args, "argv", sys.argv[1:])]
    out = args.resume
    try:
        if args.resume:
            allowed = resume_flags()
            given = [flag(k) for k, v in vars(args).items() if k not in allowed + (
                "resume", "func", "command", "argv") and v not in (None, False)]
            if given:
                raise CnnkitError(f"{given[0]} cannot be given with --resume: the run continues "
                                  f"as it was configured (with --resume: {_listed(allowed)})")
            spec = spec_from_args(args).replace(out=args.resume)
            run(spec, resume=True, command=command, nproc=args.nproc)
            return 0
        spec = with_default_recipe(spec_from_args(args), args.quiet)
        if spec.out is None:
            spec = spec.replace(out=spec.resolved().default_out())
        out = spec.out
        run(spec, command=command, nproc=args.nproc)
    except CnnkitError as e:
        raise restate(e) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(*continue_command(out)) from None
    return 0


def continue_command(out) -> tuple[str, ...]:
    """(`cnnkit train --resume OUT`,) once OUT holds a run that --resume takes (its
    config.json: a run with no finished epoch is started afresh by it); () before that, when
    nothing was written and the same command starts again."""
    import shlex

    from cnnkit.io.rundir import RunDir

    if out is None or not RunDir(out).is_run():
        return ()
    return (f"cnnkit train --resume {shlex.quote(str(out))}",)


def restate(e):
    """An error about one option, in flags: `val_split=1.5 ...` -> `--val-split 1.5 ...`, and
    other options it names (snake_case: never a word of prose) as their flags too."""
    import re

    from cnnkit.errors import CnnkitError
    from cnnkit.runs.spec import RunSpec

    if not e.option:
        return e
    e = e.restated(flag(e.option))
    names = "|".join(n for n in RunSpec.fields() if "_" in n)
    return CnnkitError(re.sub(rf"(?<![\w-])({names})(?![\w-])", lambda m: flag(m[1]), str(e)),
                       e.option, e.value)
