"""`RunSpec`: everything one training run needs, as one typed, JSON-able description.

    spec = RunSpec(model="seed003-cnn", dataset="fashion-mnist", epochs=3, lr=1e-3, out="runs/a")
    spec = RunSpec.from_recipe("fast", epochs=3)       # a recipe, with overrides
    spec = RunSpec.from_file("run.yaml")               # YAML / TOML / JSON, or a run's config.json

A field left at None is *unset*: `resolved()` fills it from the recipe, then from the defaults
(TrainConfig's: 10 epochs, batch 32, Adam, ...), and picks a seed if none was given, so the
resolved spec repeats the run exactly. The run directory's `config.json` stores the resolved
spec under "options" (the nested form this project has always written: training options under
"train"); `from_file` reads that form as well as the flat one users write.

The training options are declared once, as TrainConfig's fields: RunSpec takes each under the
same name (the dataclass `_Training` is made from TrainConfig's fields), between what to train
and the run's own options, so a new training option is one field in TrainConfig. What may
change on resume is TrainConfig's RESUMABLE, the one list for the API, the CLI and the trainer.

Stdlib only, like TrainConfig: the CLI builds and checks a spec before paying for torch.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.train.config import ENGINE_ONLY, RESUMABLE, TrainConfig

ARTIFACTS = ("full", "metrics", "none")
PHASE_FIELDS = ("head_epochs", "unfreeze", "finetune_lr_factor")  # what --freeze rules out
# The training options: TrainConfig's fields (all but its engine-only ones), declared there once.
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ENGINE_ONLY)


@dataclass
class _WhatToTrain:
    """RunSpec's first fields: what to train, on which data, from which weights."""

    model: str | dict | None = None  # preset, model file, saved model dir, or a description;
    #                                   cnnkit.run also takes your own nn.Module (recorded as
    #                                   {"module": "package.file.CNN"})
    dataset: str | None = None  # mnist, fashion-mnist, kmnist, cifar10, cifar100, digits,
    #                             folder:, npz:, csv:, parquet:, hf:
    recipe: str | None = None  # seed000, seed002, seed003, seed004, fast, best
    data_dir: str | None = None  # where the dataset's files are looked for first
    limit: int | None = None  # train on only the first N training images
    val_split: float | None = None  # fraction held out for validation; 0: none
    val_from_test: bool | None = None  # validate on the test split (seed 000 does)
    fold: dict | None = None  # {"k": 5, "index": 0, "seed": 0}: validate on fold `index` of a
    #                           stratified k-fold of the training data, train on the others
    init_from: str | None = None  # start from this saved model's weights (transfer)
    freeze: bool | None = None  # with init_from: keep the convolutional part fixed; with
    #                             backbone: the whole backbone, for the whole run
    # -- the images' size and channels: every source converted to them (bilinear resize,
    # Pillow's luma), the model built for them and recording them as its input shape
    image_size: tuple[int, int] | None = None  # (H, W); None: the data's own
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None: the data's own
    # -- a table's columns (csv:, parquet:, hf:): see cnnkit.data.load_dataset
    label_column: str | None = None  # the label column's name; None: `label`
    image_root: str | None = None  # where a file,label CSV's files are; None: its folder
    # -- a pretrained network with a new head (cnnkit.runs.backbone, cnnkit.train.phases)
    backbone: str | None = None  # mobilenetv2 (-0.35 ... -1.4), resnet50, vgg16, efficientnetb0
    weights: str | None = None  # the backbone's: imagenet (default), none, or a weights file
    head_epochs: int | None = None  # epochs training the head only, the backbone frozen (0)
    unfreeze: int | str | list | None = None  # what trains after those: the top N blocks,
    #                                           'all' (default), or block names
    finetune_lr_factor: float | None = None  # the learning rate after head_epochs, times this
    #                                          (0.1 after a head phase, else 1)


def _unset(type_name: str) -> str:
    return type_name if "None" in type_name else f"{type_name} | None"


# -- training: every TrainConfig field under its own name (see TrainConfig for each one's meaning
# and default), unset (None) until `resolved()` fills it from the recipe, then the defaults
_Training = dataclasses.make_dataclass(
    "_Training", [(f.name, _unset(f.type), field(default=None))
                  for f in dataclasses.fields(TrainConfig) if f.name in TRAIN_FIELDS],
    bases=(_WhatToTrain,))
_Training.__module__ = __name__  # make_dataclass says "types" before Python 3.12


@dataclass
class RunSpec(_Training):
    """Every option of one run; the training ones are TrainConfig's (see the module's note)."""

    # -- callbacks
    early_stopping: int | None = None  # patience on val_loss, restoring the best weights
    tensorboard: bool | None = None  # also write TensorBoard event files to RUN/tensorboard
    # -- several processes (cnnkit.run(spec, nproc=N), torchrun; see cnnkit.distributed)
    sync_bn: bool | None = None  # batch norm statistics over the global batch (SyncBatchNorm)
    batch_size_per_process: int | None = None  # each process's batch: the global batch is this
    #                                            times the processes (batch_size: the global one)
    scale_lr: str | None = None  # none, or linear: lr times the processes (Goyal et al. 2017)
    warmup_epochs: int | None = None  # scale_lr=linear: reach the scaled lr over these epochs
    # -- the run itself
    out: str | None = None  # the run directory; None: in memory, nothing written
    artifacts: str | None = None  # full, metrics (config, history, metrics, state) or none

    def __post_init__(self) -> None:
        if hasattr(self.model, "get_config"):  # a Sequential: its description, fresh weights
            self.model = self.model.get_config()
        if isinstance(self.out, os.PathLike):
            self.out = os.fspath(self.out)

    # -- forms ---------------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict:
        """Flat and JSON-able; unset fields included as None."""
        return dataclasses.asdict(self)

    def explicit(self) -> dict:
        """The fields that were set (not None)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict, where: str = "run spec") -> "RunSpec":
        """From the flat form, the nested one (training options under "train"), or a whole
        config.json (which holds the nested form under "options")."""
        if not isinstance(d, dict):
            raise CnnkitError(f"{where}: expected a mapping of run options; received "
                              f"{type(d).__name__}")
        if isinstance(d.get("options"), dict):  # a run's config.json
            d = d["options"]
        flat = {k: v for k, v in d.items() if k != "train"}
        train = d.get("train")
        if train is not None:
            if not isinstance(train, dict):
                raise CnnkitError(f"{where}: 'train' must be a mapping of training options")
            for key, value in train.items():
                if key in ENGINE_ONLY and value == getattr(TrainConfig, key):
                    continue  # engine defaults that config.json records
                flat.setdefault(key, value)
        names = cls.fields()
        for key in flat:
            if key not in names:
                raise CnnkitError(f"{where}: " + str(one_of("run option", key, names)))
        return cls(**flat)

    @classmethod
    def from_file(cls, path) -> "RunSpec":
        """A RunSpec from YAML, TOML or JSON (a run's own config.json included)."""
        from cnnkit.io.bounded import read_structured

        return cls.from_dict(read_structured(path, what="run file"), where=str(path))

    def to_options(self) -> dict:
        """The nested form stored in config.json under "options" (resolve first). `out` is
        left out: a run directory is where its config.json is, and the same file run again
        (`cnnkit train --config`) must not name the finished run's directory."""
        d = self.to_dict()
        d.pop("out")
        train = {k: d.pop(k) for k in TRAIN_FIELDS}
        return {**d, "train": TrainConfig.from_dict(train).to_dict()}

    def replace(self, **changes) -> "RunSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_recipe(cls, name: str, **overrides) -> "RunSpec":
        """The recipe's whole setup with `overrides` on top, resolved."""
        return cls(recipe=name, **overrides).resolved()

    # -- resolution and checks ----------------------------------------------------------------
    def resolved(self) -> "RunSpec":
        """Every field filled: given value, else the recipe's, else the default. Checks every
        value (one clear line for the first bad one) without importing torch."""
        from cnnkit.runs.recipes import get_recipe

        recipe = get_recipe(self.recipe) if self.recipe else None
        d = self.to_dict()
        base = dict(recipe.train) if recipe else {}
        augment = dict(base.pop("augment", None) or {})
        augment.update(d["augment"] or {})
        for name in TRAIN_FIELDS:
            if d[name] is None and name in base:
                d[name] = base[name]
        d["augment"] = augment or None
        if recipe:
            for name, value in recipe.run.items():  # the recipe's other run options
                if d[name] is None and not (d["freeze"] and name in PHASE_FIELDS):
                    d[name] = value
            d["model"] = d["model"] if d["model"] is not None else recipe.model
            d["dataset"] = d["dataset"] or recipe.dataset
            if d["val_split"] is None and not d["fold"]:  # a fold is the validation split
                d["val_split"] = recipe.val_split
            if d["early_stopping"] is None and (d["val_split"] or self.val_split is None):
                # the recipe's early stopping watches the recipe's validation split: without
                # validation (val_split=0 given) it is off, and the run says so
                d["early_stopping"] = recipe.early_stopping
            if d["val_from_test"] is None:  # an explicit val_split, even 0, says otherwise
                d["val_from_test"] = (recipe.val_from_test and self.val_split is None
                                      and not d["fold"])
        p = d["batch_size_per_process"]
        if p is not None:  # the global batch is p x processes, fixed where the run starts
            if self.batch_size is not None and self.batch_size != p:
                raise CnnkitError(f"batch_size={self.batch_size!r} and batch_size_per_process="
                                  f"{p!r} are both given; valid: one of them (batch_size is "
                                  "the global batch, split over the processes)",
                                  option="batch_size_per_process", value=p)
            d["batch_size"] = p
        if d["seed"] is None:
            d["seed"] = int(time.time_ns() % 2**31)  # recorded, so the run can be repeated
        defaults = TrainConfig()
        for name in TRAIN_FIELDS:
            if d[name] is None:
                d[name] = getattr(defaults, name)
        from cnnkit.train.threads import parse_threads

        d["threads"] = parse_threads(d["threads"])  # "2" from a flag or a file -> 2
        from cnnkit.data.balance import read_class_weight

        d["class_weight"] = read_class_weight(d["class_weight"])  # a JSON file: its weights
        for name, default in (("val_split", 0.0), ("val_from_test", False), ("freeze", False),
                              ("tensorboard", False), ("artifacts", "full"),
                              ("sync_bn", False), ("scale_lr", "none"), ("warmup_epochs", 0)):
            if d[name] is None:
                d[name] = default
        from cnnkit.data import check_channels, check_size  # stdlib only: no torch yet

        d["image_size"] = check_size(d["image_size"], "image_size")  # "160" -> (160, 160)
        d["channels"] = check_channels(d["channels"], "channels")
        if d["backbone"] is not None:
            from cnnkit.runs.backbone import resolve_backbone_fields

            resolve_backbone_fields(d)
        spec = RunSpec(**d)
        spec.check()
        return spec

    def check(self) -> None:
        """Validate a resolved spec; raises one CnnkitError naming the first bad value."""
        if (self.model is None and self.backbone is None) or not self.dataset:
            raise CnnkitError("say what to train: a model (or a backbone) and a dataset, or a "
                              "recipe (seed000, seed002, seed003, seed004, fast, best, finetune)")
        from cnnkit.runs.backbone import check_backbone_fields

        check_backbone_fields(self)
        if self.backbone is None and not isinstance(self.model, (str, dict)):
            raise CnnkitError(f"model={self.model!r} is not understood; valid: a preset name, "
                              "a model file, a saved model directory, a Sequential or its "
                              "description (a dict), or your own nn.Module (to cnnkit.run)")
        if not isinstance(self.dataset, str):
            raise CnnkitError(f"dataset={self.dataset!r} is not understood; valid: a dataset "
                              "name such as 'fashion-mnist', 'digits', 'folder:PATH' or 'npz:PATH'")
        v = self.val_split
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not 0 <= v < 1:
            raise out_of_range("val_split", v, "0 <= val_split < 1 (0: no validation split)")
        p = self.early_stopping
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 0):
            raise out_of_range("early_stopping", p, "an integer patience >= 0")
        n = self.limit
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 10):
            raise out_of_range("limit", n, "an integer of at least 10 images")
        if self.fold is not None:
            check_fold(self.fold, self.val_split, self.val_from_test)
        if p is not None and not self.val_split and not self.val_from_test and not self.fold:
            raise CnnkitError(f"early_stopping={p!r} needs validation data to watch; valid: "
                              "with val_split > 0 (early stopping stops on val_loss)",
                              option="early_stopping", value=p)
        check_parallel(self)
        for name in ("val_from_test", "freeze", "tensorboard", "sync_bn"):
            if not isinstance(getattr(self, name), bool):
                raise out_of_range(name, getattr(self, name), "true or false")
        if self.freeze and not self.init_from and not self.backbone:
            raise CnnkitError("freeze needs init_from (the saved model whose weights to keep) "
                              "or backbone", option="freeze")
        if self.artifacts not in ARTIFACTS:
            raise one_of("artifacts", self.artifacts, ARTIFACTS)
        if self.out is not None and not isinstance(self.out, str):
            raise CnnkitError(f"out={self.out!r} is not a path; valid: a directory path or None")
        self.train_config()  # every training option

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict({k: getattr(self, k) for k in TRAIN_FIELDS})

    def differences(self, other: "RunSpec") -> list[str]:
        """'lr: 0.001 -> 0.01' for each field that would change a resumed run's results."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RESUMABLE and a[k] != b[k]]

    @property
    def model_label(self) -> str:
        """A short name for the model: the preset, the file's stem, or the description's name."""
        if self.model is None and self.backbone:
            return str(self.backbone)
        if isinstance(self.model, dict):  # a description, or {"module": "package.file.CNN"}
            return str(self.model.get("name") or self.model.get("module", "model").split(".")[-1])
        return Path(self.model).stem if "/" in self.model else self.model

    def default_out(self) -> str:
        """runs/<model>-<dataset>-<time>: where the CLI puts a run not given --out."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return str(Path("runs") / f"{self.model_label}-{self.dataset.split(':')[0]}-{stamp}")


def check_fold(fold, val_split, val_from_test) -> None:
    """A fold is its own validation split: {"k": K >= 2, "index": 0..K-1, "seed": int}."""
    whole = (isinstance(fold, dict) and {"k", "index"} <= set(fold) <= {"k", "index", "seed"}
             and all(isinstance(v, int) and not isinstance(v, bool) for v in fold.values()))
    if not whole or fold["k"] < 2 or not 0 <= fold["index"] < fold["k"]:
        raise out_of_range("fold", fold, 'a mapping {"k": K >= 2, "index": 0 <= index < K, '
                           '"seed": an integer}')
    if val_split or val_from_test:
        raise CnnkitError(f"fold={fold!r} is its own validation split; valid: with val_split=0 "
                          "and val_from_test=false", option="fold", value=fold)


SCALE_LR = ("none", "linear")


def check_parallel(spec) -> None:
    """The options of a run over several processes (they do nothing in one)."""
    p = spec.batch_size_per_process
    if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 1):
        raise out_of_range("batch_size_per_process", p, "an integer >= 1")
    if spec.scale_lr not in SCALE_LR:
        raise one_of("scale_lr", spec.scale_lr, SCALE_LR)
    w = spec.warmup_epochs
    if isinstance(w, bool) or not isinstance(w, int) or w < 0:
        raise out_of_range("warmup_epochs", w, "an integer >= 0")
    if w and spec.scale_lr != "linear":
        raise CnnkitError(f"warmup_epochs={w!r} warms up to the scaled learning rate; valid: "
                          "with scale_lr='linear'", option="warmup_epochs", value=w)


@dataclass
class RunResult:
    """What `cnnkit.run` returns: the resolved spec, the test metrics (as in metrics.json), the
    per-epoch history, the trained model (the best epoch's weights, as saved in best/), the
    test split's classification report, and the run directory (None when run in memory)."""

    spec: RunSpec
    metrics: dict
    history: dict
    model: object
    report: dict = field(repr=False, default_factory=dict)
    run_dir: Path | None = None

    def __repr__(self) -> str:
        acc = self.metrics.get("test_accuracy")
        acc = "None" if acc is None else f"{acc:.4f}"  # None: a torchrun rank other than 0
        return (f"RunResult(test_accuracy={acc}, epochs={len(self.history.get('loss', []))}, "
                f"run_dir={str(self.run_dir) if self.run_dir else None!r})")
