"""A training run: options resolved (recipe < CLI), data split, model built, trained with
callbacks, evaluated on the test split, and everything written into `runs/NAME/`.

Run directory:
    config.json      the resolved configuration (what --recipe and defaults became)
    history.csv      one row per epoch, written as each epoch ends
    state/           the complete training state after the last finished epoch (for --resume)
    best/  last/     saved model directories (best validation loss; last epoch)
    metrics.json     final and best figures, wall time, samples/s
    curves.png  confusion_matrix.png  mistakes.png  report.md
Every file is written atomically, so `kill -9` at any moment leaves a resumable directory.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_write_json, recover_dir

TEST_FRACTION = 0.2  # held out as the test split for datasets without an official one
TRAIN_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                "loss", "label_smoothing", "schedule", "clip_norm", "seed", "device", "precision",
                "normalize", "dry_run", "test_time_flip", "ema")
AUGMENT_KEYS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range",
                "zoom_range", "horizontal_flip", "vertical_flip", "fill_mode")


# -- options ----------------------------------------------------------------------------------
def options_from_args(args) -> dict:
    """Merge recipe and command line into one JSON-able dict (the run's config.json)."""
    from cnnkit.train.config import TrainConfig
    from cnnkit.runs.recipes import get_recipe

    recipe = get_recipe(args.recipe) if args.recipe else None
    train = dict(recipe.train) if recipe else {}
    for name in TRAIN_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            train[name] = value
    augment = dict((recipe.train.get("augment") or {}) if recipe else {})
    augment.update({k: getattr(args, k) for k in AUGMENT_KEYS if getattr(args, k, None) is not None})
    if augment:
        train["augment"] = augment
    if args.quiet:
        train["verbose"] = 0
    elif not sys.stdout.isatty():
        train["verbose"] = 2
    if train.get("seed") is None:
        train["seed"] = int(time.time_ns() % 2**31)  # recorded, so the run can be repeated
    config = TrainConfig.from_dict(train)  # validates every value now, before anything is written

    model = args.model or (recipe.model if recipe else None)
    dataset = args.dataset or (recipe.dataset if recipe else None)
    if not model or not dataset:
        raise CnnkitError("say what to train: --model and --dataset, or --recipe "
                          "(seed000, seed002, seed003, seed004, fast, best)")
    val_split = args.val_split if args.val_split is not None else (recipe.val_split if recipe else None)
    if val_split is not None and not 0 < val_split < 1:
        raise CnnkitError(f"--val-split {val_split} is out of range; valid: 0 < val-split < 1")
    patience = args.early_stopping if args.early_stopping is not None else (
        recipe.early_stopping if recipe else None)
    if patience is not None and patience < 0:
        raise CnnkitError(f"--early-stopping {patience} is out of range; valid: patience >= 0")
    if args.limit is not None and args.limit < 10:
        raise CnnkitError(f"--limit {args.limit} is out of range; valid: at least 10 images")
    if args.freeze and not args.init_from:
        raise CnnkitError("--freeze needs --init-from MODEL_DIR (the trained weights to keep)")
    return {
        "recipe": recipe.name if recipe else None, "model": model, "dataset": dataset,
        "data_dir": args.data_dir, "limit": args.limit, "val_split": val_split,
        "val_from_test": bool(recipe and recipe.val_from_test and val_split is None),
        "early_stopping": patience, "init_from": args.init_from, "freeze": bool(args.freeze),
        "tensorboard": bool(args.tensorboard), "train": config.to_dict(),
    }


def default_run_dir(options: dict) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model = Path(options["model"]).stem if "/" in options["model"] else options["model"]
    dataset = options["dataset"].split(":")[0]
    return Path("runs") / f"{model}-{dataset}-{stamp}"


# -- data and model ---------------------------------------------------------------------------
def prepare_data(options: dict, model_shape=None):
    """(dataset, splits) where splits maps train/val/test to (x, y) or None."""
    import torch

    from cnnkit.data import load_dataset
    from cnnkit.data.split import stratified_split, train_val_split

    channels, size = (model_shape[2], model_shape[:2]) if model_shape else (None, None)
    ds = load_dataset(options["dataset"], data_dir=options["data_dir"], channels=channels,
                      size=size)
    seed = options["train"]["seed"]
    x, y = ds.x_train, ds.y_train
    if ds.has_test:
        test = (ds.x_test, ds.y_test)
    else:  # no official test split: hold one out, stratified, reproducibly
        keep, held = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION), seed=0,
                                      class_names=ds.class_names)
        test, x, y = (x[held], y[held]), x[keep], y[keep]
    if options["limit"]:
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:options["limit"]]
        x, y = x[pick.sort().values], y[pick.sort().values]
    val = None
    if options["val_split"]:
        tr, va = train_val_split(y, options["val_split"], seed=seed, class_names=ds.class_names)
        x, y, val = x[tr], y[tr], (x[va], y[va])
    elif options["val_from_test"]:
        val = test
    return ds, {"train": (x, y), "val": val, "test": test}


def build_model(options: dict, ds):
    """The model to train, fitted to the data: presets adapt to its shape and classes."""
    from cnnkit.model.files import resolve_model
    from cnnkit.model.presets import PRESETS, create_model

    spec = options["model"]
    if spec in PRESETS and not Path(spec).exists():
        model = create_model(spec, input_shape=ds.image_shape, num_classes=ds.num_classes)
    else:
        model = resolve_model(spec)
    model.check_classifier()
    if tuple(model.input_shape) != tuple(ds.image_shape):
        raise CnnkitError(f"the model's input shape {tuple(model.input_shape)} does not fit the "
                          f"data's images {tuple(ds.image_shape)} (H, W, C)")
    units = model.output_shape[0]
    if units != ds.num_classes and not (units == 1 and ds.num_classes == 2):
        raise CnnkitError(f"the model has {units} outputs but {options['dataset']} has "
                          f"{ds.num_classes} classes")
    model.class_names = list(ds.class_names)
    model.dataset = options["dataset"]
    if options["init_from"]:
        from cnnkit.train.transfer import init_from

        model = init_from(model, options["init_from"], ds.num_classes, options["freeze"])
    return model


# -- the run ----------------------------------------------------------------------------------
def make_callbacks(options: dict, run_dir: Path, has_val: bool) -> list:
    from cnnkit.train.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoard

    callbacks = [CSVLogger(run_dir / "history.csv")]
    if has_val:
        callbacks.append(ModelCheckpoint(run_dir / "best", monitor="val_loss", save_best_only=True))
        if options["early_stopping"] is not None:
            callbacks.append(EarlyStopping(monitor="val_loss", patience=options["early_stopping"],
                                           restore_best_weights=True))
    if options["tensorboard"]:
        callbacks.append(TensorBoard(run_dir / "tensorboard"))
    return callbacks


def train_from_args(args) -> Path:
    if args.resume:
        run_dir = Path(args.resume)
        options = read_run_config(run_dir)
        if args.epochs is not None:
            options["train"]["epochs"] = args.epochs
        if args.quiet:
            options["train"]["verbose"] = 0
        return execute(options, run_dir, resume=True)
    options = options_from_args(args)
    run_dir = Path(args.out) if args.out else default_run_dir(options)
    if (run_dir / "config.json").exists():
        raise CnnkitError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                          "or choose another --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CnnkitError(f"{run_dir} exists and is not empty; choose another --out")
    return execute(options, run_dir, resume=False)


def read_run_config(run_dir: Path) -> dict:
    cfg = run_dir / "config.json"
    if not cfg.is_file():
        raise CnnkitError(f"{run_dir}: not a run directory (no config.json)")
    try:
        return json.loads(cfg.read_text())["options"]
    except (json.JSONDecodeError, KeyError) as e:
        raise CnnkitError(f"{cfg}: corrupt run configuration ({e})") from None


def execute(options: dict, run_dir: Path, resume: bool) -> Path:
    import torch

    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    t_start = time.perf_counter()
    say = (lambda *a: None) if options["train"]["verbose"] == 0 else print
    config = TrainConfig.from_dict(options["train"])
    ds, splits = _load(options)
    torch.manual_seed(config.seed)  # the initial weights too come from the run's seed
    model = build_model(options, ds)
    state_dir = run_dir / "state"
    if resume:
        for name in ("state", "best", "last"):
            recover_dir(run_dir / name)
    if resume and not (state_dir / "state.json").is_file():
        raise CnnkitError(f"{run_dir}: no completed epoch to resume from; start the run again")

    from cnnkit.train.losses import make_loss

    make_loss(config.loss, ds.num_classes, model.output_activation, config.label_smoothing)
    run_dir.mkdir(parents=True, exist_ok=True)  # only now: every input has been checked
    if not resume:
        atomic_write_json(run_dir / "config.json", {
            "options": options, "resolved": {
                "model_summary": model.summary_dict() | {"layers": None},
                "dataset": {"name": ds.name, "source": ds.source, "image_shape": ds.image_shape,
                            "class_names": ds.class_names},
                "splits": {k: (len(v[0]) if v else 0) for k, v in splits.items()},
            }, "command": sys.argv})
    callbacks = make_callbacks(options, run_dir, splits["val"] is not None)
    trainer = Trainer(model, config, callbacks, state_dir=state_dir)
    if resume:
        trainer.load_state(state_dir)
        say(f"Resuming {run_dir} after epoch {trainer.epoch}")
    say(f"Training {options['model']} on {ds.name}: {len(splits['train'][0]):,} train / "
        f"{len(splits['val'][0]) if splits['val'] else 0:,} validation images, precision "
        f"{trainer.precision}, device {trainer.device}, seed {trainer.seed} → {run_dir}")
    x, y = splits["train"]
    xv, yv = splits["val"] if splits["val"] else (None, None)
    t_fit = time.perf_counter()
    history = trainer.fit(x, y, xv, yv)
    fit_time = time.perf_counter() - t_fit

    from cnnkit.runs.report import finish_run

    finish_run(run_dir, options, ds, splits, model, trainer, history,
               timing={"fit_s": fit_time, "start": t_start}, say=say)
    return run_dir


def _load(options):
    """The dataset and its train/val/test splits."""
    from cnnkit.model.files import resolve_model
    from cnnkit.model.presets import PRESETS

    spec = options["model"]
    shape = None
    # Folders have no size of their own: bring them to a given model's input. Other datasets
    # keep theirs, and a model that does not fit them is an error (build_model says so).
    if options["dataset"].startswith("folder:") and (spec not in PRESETS or Path(spec).exists()):
        shape = resolve_model(spec).input_shape
    return prepare_data(options, shape)
