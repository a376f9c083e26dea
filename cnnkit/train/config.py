"""`TrainConfig`: every training choice in one validated, JSON-able record.

Kept free of torch imports (stdlib only) so the CLI can build and check a configuration, and
print its help, without paying torch's import time.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.train import losses, optim, optimizers

OPTIMIZERS = optimizers.names()  # the registries' names: the CLI's and the errors' lists
LOSSES = tuple(losses.LOSSES)
SCHEDULES = tuple(optim.SCHEDULES)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # fp16: with loss scaling (GradScaler)
NORMALIZE = ("unit", "standardize")  # as cnnkit.data.batches.NORMALIZE_MODES

# What may change when a run is resumed, the one list: the trainer's check of a loaded state
# (TrainConfig.differences), RunSpec's (cnnkit.resume, cnnkit.run(resume=True)) and the flags
# `cnnkit train --resume` takes all read it. None of it changes the arithmetic of the epochs
# done: epochs may grow, the rest says where and how loudly it runs. data_dir and out are
# RunSpec's (where the data and the run directory are).
LR_FIND = "find"  # lr="find": a run asks the learning-rate finder (cnnkit.runs.lr_find)
RESUMABLE = ("epochs", "verbose", "device", "threads", "data_dir", "out")
# TrainConfig's fields that are not run options: RunSpec has no field for them, and a run
# keeps these defaults (config.json records them under "train").
ENGINE_ONLY = ("eval_batch_size", "compile")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32  # Keras's default
    optimizer: str = "adam"
    lr: float | None = None  # None: Keras's default for the optimizer
    momentum: float = 0.0  # sgd, rmsprop
    nesterov: bool = False  # sgd with momentum
    weight_decay: float | None = None  # None: 0, or Keras AdamW's 0.004 for adamw
    optimizer_options: dict | None = None  # its other Keras arguments: {"beta_2": 0.99}
    loss: str = "sparse_categorical_crossentropy"
    label_smoothing: float = 0.0
    class_weight: str | dict | None = None  # 'balanced' or {class name or id: weight}: each
    #                                         image's loss weighted (cnnkit.data.balance)
    sampler: str | None = None  # 'balanced': each epoch draws every class equally often
    schedule: str = "constant"
    step_size: int = 10  # epochs between decays, schedule 'step'
    gamma: float = 0.1  # decay factor, schedule 'step'
    clip_norm: float | None = None  # clip the global gradient norm to this
    augment: dict | None = None  # Keras ImageDataGenerator arguments (cnnkit.data.augment)
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup's blend, 0: off (cnnkit.data.mixing)
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix's box; with mixup: one per batch
    random_erasing: float = 0.0  # probability that an image gets a box of noise
    test_time_flip: bool = False  # evaluate and predict on each image and its mirror (averaged)
    ema: float | None = None  # decay of an exponential moving average of the weights (0.999)
    seed: int | None = None  # None: a random seed, chosen and recorded by the trainer
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where the hardware has bf16 math, else fp32
    threads: int | str | None = None  # CPU threads: N, or auto (measured; cnnkit.train.threads);
    #                                   None: CNNKIT_THREADS, a user's OMP_NUM_THREADS, else auto
    normalize: str = "unit"  # unit: pixels / 255; standardize: per-channel mean/std of train
    dry_run: bool = False  # one batch per epoch (smoke tests)
    verbose: int = 1  # 0 quiet, 1 bar on a terminal + a line per epoch, 2 lines only
    # Evaluation batch: activations of ~128 images stay in cache; measured on seed003-cnn,
    # 10k images: 128 → 5,200-6,100 img/s, 512 → 3,600-4,800, 1000 → 3,400-4,100.
    eval_batch_size: int = 128
    compile: bool = False  # torch.compile the model (see README figures: rarely worth it on CPU)

    def __post_init__(self) -> None:
        # names as Keras takes them (`Adam`, `MeanSquaredError`), recorded as the registries'
        self.optimizer = optimizers.optimizer_name(self.optimizer)
        self.loss = losses.loss_name(self.loss)
        self.validate()

    def validate(self) -> None:
        """Raise a one-line CnnkitError naming the first bad value."""
        def positive_int(name):
            v = getattr(self, name)
            if not _integer(v) or v < 1:
                raise out_of_range(name, v, "an integer >= 1")

        for name in ("epochs", "batch_size", "step_size", "eval_batch_size"):
            positive_int(name)
        for name, valid in (("optimizer", optimizers.names()), ("loss", tuple(losses.LOSSES)),
                            ("schedule", tuple(optim.SCHEDULES)),  # the registries, as they are now
                            ("device", DEVICES), ("precision", PRECISIONS),
                            ("normalize", NORMALIZE)):
            if getattr(self, name) not in valid:
                raise one_of(name, getattr(self, name), valid)
        if self.lr is not None and self.lr != LR_FIND and (not _number(self.lr) or self.lr <= 0):
            raise out_of_range("lr", self.lr, "a number > 0, or 'find' (the learning-rate "
                               "finder's suggestion: a run)")
        if not _number(self.momentum) or not 0 <= self.momentum < 1:
            raise out_of_range("momentum", self.momentum, "0 <= momentum < 1")
        if not _number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise out_of_range("label_smoothing", self.label_smoothing, "0 <= label_smoothing < 1")
        if not _number(self.gamma) or not 0 < self.gamma <= 1:
            raise out_of_range("gamma", self.gamma, "0 < gamma <= 1")
        if self.clip_norm is not None and (not _number(self.clip_norm) or self.clip_norm <= 0):
            raise out_of_range("clip_norm", self.clip_norm, "a number > 0")
        if self.seed is not None and (not _integer(self.seed) or not 0 <= self.seed < 2**63):
            raise out_of_range("seed", self.seed, "an integer >= 0")
        if self.verbose not in (0, 1, 2):
            raise out_of_range("verbose", self.verbose, "0, 1, 2")
        from cnnkit.train.threads import parse_threads

        self.threads = parse_threads(self.threads)
        if not isinstance(self.test_time_flip, bool):
            raise out_of_range("test_time_flip", self.test_time_flip, "true or false")
        if self.ema is not None and (not _number(self.ema) or not 0 < self.ema < 1):
            raise out_of_range("ema", self.ema, "0 < ema < 1 (the averaging decay, e.g. 0.999)")
        from cnnkit.data.mixing import check_alpha, check_probability  # no torch

        check_alpha("mixup", self.mixup)
        check_alpha("cutmix", self.cutmix)
        check_probability("random_erasing", self.random_erasing)
        from cnnkit.data.balance import check_class_weight, check_sampler

        check_class_weight(self.class_weight)
        check_sampler(self.sampler)
        if self.augment is not None and not isinstance(self.augment, dict):
            raise CnnkitError(f"augment must be a dict of Keras augmentation arguments; got {self.augment!r}")
        # the optimizer's own checks (the registry's), so compile and the CLI fail as fit would
        optimizers.create(self.optimizer, momentum=self.momentum or None,
                          nesterov=self.nesterov or None, weight_decay=self.weight_decay,
                          **self._optimizer_options())

    def _optimizer_options(self) -> dict:
        options = self.optimizer_options or {}
        if not isinstance(options, dict):
            raise out_of_range("optimizer_options", options, "a dict of the optimizer's "
                               "Keras arguments, e.g. {'beta_2': 0.99}")
        named = sorted(set(options) & {"learning_rate", "lr", "momentum", "nesterov",
                                       "weight_decay"})
        if named:  # one place for each setting: the field resume and config.json compare
            field = "lr" if named[0] in ("lr", "learning_rate") else named[0]
            raise CnnkitError(f"optimizer_options: give {named[0]} as the training option "
                              f"{field}, not inside optimizer_options")
        return options

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise one_of("training option", key, names)
        return cls(**d)

    def differences(self, other: "TrainConfig") -> list[str]:
        """'lr: 0.001 -> 0.01' for every field that changes results (for resume checks)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a
                if k not in RESUMABLE and a[k] != b[k]]
