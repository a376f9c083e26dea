"""Recipes: a seed tutorial's whole training setup under one name (`--recipe seed002`).

A recipe fills in the model (or a pretrained backbone and its fine-tuning phases), the
dataset, how validation data is made, and the training options; anything the user passes on the command line wins over the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cnnkit.errors import one_of


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    model: str | None  # None: the recipe's `run` names a backbone instead
    dataset: str | None  # None: the user's (`--dataset folder:PATH`)
    train: dict = field(default_factory=dict)  # TrainConfig fields
    run: dict = field(default_factory=dict)  # other RunSpec fields (a backbone's phases)
    val_split: float | None = None  # fraction of training data held out (stratified)
    val_from_test: bool = False  # validate on the test split, as seed 000 did
    early_stopping: int | None = None  # patience, with restore_best_weights
    reported: str = ""  # what the seed reported, for the report


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("seed000", "seed 000: train_mnist_model, Adam, batch 20, 10 epochs, one-hot labels, "
           "test set as validation", model="seed000-mnist", dataset="mnist",
           train={"optimizer": "adam", "batch_size": 20, "epochs": 10,
                  "loss": "categorical_crossentropy"},
           val_from_test=True, reported="val accuracy 0.984"),
    Recipe("seed002", "seed 002: Fashion-MNIST /255, 80/20 split, Adam, sparse CE, up to 20 epochs, "
           "best checkpoint + early stopping(2)", model="seed002-fashion", dataset="fashion-mnist",
           train={"optimizer": "adam", "batch_size": 32, "epochs": 20,
                  "loss": "sparse_categorical_crossentropy"},
           val_split=0.2, early_stopping=2, reported="91.6% test accuracy (Keras, ~210 s)"),
    Recipe("seed003", "seed 003: PyTorch CNN, Adam lr 1e-3, batch 100, 15 epochs, seed 777",
           model="seed003-cnn", dataset="mnist",
           train={"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 15, "seed": 777},
           reported="test accuracy 0.9883"),
    Recipe("seed004", "seed 004: Chollet's convnet, RMSprop, batch 64, 5 epochs, one-hot labels",
           model="seed004-chollet", dataset="mnist",
           train={"optimizer": "rmsprop", "batch_size": 64, "epochs": 5,
                  "loss": "categorical_crossentropy"},
           reported="test accuracy 0.9879"),
    Recipe("fast", "cnnkit's fast path: fast-cnn-dense, batch 128, Adam one-cycle (peak 8e-3), "
           "label smoothing 0.1, 3 epochs", model="fast-cnn-dense", dataset="fashion-mnist",
           train={"optimizer": "adam", "lr": 8e-3, "batch_size": 128, "epochs": 3,
                  "schedule": "onecycle", "label_smoothing": 0.1},
           reported="goal: >= 91.6% in <= 30 s of wall time"),
    Recipe("best", "cnnkit's accuracy recipe: best-vgg, batch 128, Adam one-cycle, label smoothing, "
           "flips and shifts, test-time flips, 15 epochs", model="best-vgg",
           dataset="fashion-mnist",
           train={"optimizer": "adam", "lr": 3e-3, "batch_size": 128, "epochs": 15,
                  "schedule": "onecycle", "label_smoothing": 0.1, "test_time_flip": True,
                  "augment": {"horizontal_flip": True, "width_shift_range": 2,
                              "height_shift_range": 2, "fill_mode": "constant"}},
           reported="goal: >= 94.0% in <= 10 min of wall time"),
    Recipe("finetune", "Chollet's fine-tuning: pretrained MobileNetV2 (ImageNet) and a new head, "
           "trained 5 epochs with the backbone frozen, then 5 more with its top 3 blocks at "
           "lr / 10; Adam, batch 32, 20% validation; your --dataset",
           model=None, dataset=None, val_split=0.2,
           train={"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 10},
           run={"backbone": "mobilenetv2", "weights": "imagenet", "head_epochs": 5,
                "unfreeze": 3, "finetune_lr_factor": 0.1},
           reported="a learner's first photo folder: pretrained beats random initialization"),
]}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise one_of("recipe", name, RECIPES)
    return RECIPES[name]
