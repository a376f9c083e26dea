"""One list of what may change when a run is resumed: `cnnkit.resume` (the API), `cnnkit train
--resume` (the CLI) and the trainer's own check of a loaded state allow the same changes."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.runs.run import read_run_spec, resolve_run
from cnnkit.runs.spec import RunSpec
from cnnkit.train.config import RESUMABLE, TrainConfig
from cnnkit.train.trainer import Trainer

TINY = {"input_shape": [8, 8, 1], "layers": [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
    {"Dense": {"units": 10, "activation": "softmax"}}]}
# a valid new value for each option that may change (the others need only differ)
VALID = {"epochs": 2, "device": "cpu", "threads": 1, "verbose": 0}
# the finished run's answer to a resume that leaves it nothing to train: the change itself passed
NOTHING_LEFT = "there is nothing left to train"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    cnnkit.run(RunSpec(model=TINY, dataset="digits", epochs=1, batch_size=128, seed=1,
                       verbose=0, threads=1, artifacts="metrics", out=str(out)))
    return out


def _changed(name: str, saved, tmp_path):
    """A value of option `name` other than the run's own `saved`."""
    if name in VALID:
        return VALID[name]
    if name == "data_dir":
        return str(tmp_path)
    kind = {f.name: f.type for f in dataclasses.fields(RunSpec)}[name]
    if name == "fold":
        return {"k": 2, "index": 1}
    if name == "augment":
        return {"horizontal_flip": True}
    if "bool" in kind:
        return not saved
    if "int" in kind:
        return (saved or 0) + 2
    if "float" in kind:
        return 0.25 if saved != 0.25 else 0.5
    return "seed003-cnn" if name == "model" else "rmsprop"


def _cli_args(name: str, value) -> list[str]:
    if name == "verbose":
        return ["--quiet"]
    if name == "augment":
        return ["--horizontal-flip"]
    flag = "--" + name.replace("_", "-")
    return [flag] if value is True else [flag, str(value)]


def test_the_api_and_the_cli_allow_the_same_changes_on_resume(run_dir, tmp_path, capsys):
    saved = read_run_spec(run_dir)
    api, cli = set(), set()
    for name in RunSpec.fields():
        if name == "out":  # the run directory itself: what is resumed
            continue
        value = _changed(name, getattr(saved, name), tmp_path)
        try:
            resolve_run(RunSpec(out=str(run_dir), **{name: value}), resume=True)
            api.add(name)
        except CnnkitError as e:
            if NOTHING_LEFT in str(e):  # the change was allowed; the run is finished, though
                api.add(name)
                continue
            assert f"{name}=" in str(e) and "differs from what" in str(e), str(e)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    flags = set(re.findall(r"--[a-z][a-z-]*", capsys.readouterr().out))
    for name in RunSpec.fields():
        args = _cli_args(name, _changed(name, getattr(saved, name), tmp_path))
        if name == "out" or args[0] not in flags:  # fold: an option of files and the API only
            api.discard(name)
            continue
        code = main(["train", "--resume", str(run_dir), *args])
        err = capsys.readouterr().err
        if code == 0 or (code == 2 and NOTHING_LEFT in err):
            cli.add(name)
        else:
            assert code == 2 and "cannot be given with --resume" in err, err
    assert api == cli == set(RESUMABLE) - {"out"}


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images * 16).clamp(0, 255).to(torch.uint8).unsqueeze(-1)
    return x[:256], torch.tensor(d.target[:256])


# a valid new value for every TrainConfig field (the base config: sgd with momentum)
TRAIN_CHANGES = {"epochs": 3, "batch_size": 16, "optimizer": "rmsprop", "lr": 0.5,
                 "momentum": 0.5, "nesterov": True, "weight_decay": 0.01, "loss": "mse",
                 "label_smoothing": 0.1, "schedule": "cosine", "step_size": 3, "gamma": 0.5,
                 "clip_norm": 1.0, "augment": {"horizontal_flip": True},
                 "test_time_flip": True, "ema": 0.9, "seed": 9, "device": "cpu",
                 "precision": "fp32", "threads": 2, "normalize": "standardize",
                 "dry_run": True, "verbose": 2, "eval_batch_size": 64, "compile": True,
                 "optimizer_options": {"clipvalue": 1.0}, "mixup": 0.2, "cutmix": 1.0,
                 "random_erasing": 0.25, "class_weight": "balanced", "sampler": "balanced"}


def test_the_trainer_checks_a_loaded_state_against_the_same_list(tmp_path):
    assert set(TRAIN_CHANGES) == {f.name for f in dataclasses.fields(TrainConfig)}
    base = TrainConfig(epochs=1, batch_size=64, optimizer="sgd", momentum=0.9, seed=1,
                       verbose=0, threads=1)

    def model():
        return cnnkit.Sequential.from_config(TINY)

    trainer = Trainer(model(), base, state_dir=tmp_path / "state")
    trainer.fit(*_digits())
    allowed = set()
    for name, value in TRAIN_CHANGES.items():
        try:
            Trainer(model(), dataclasses.replace(base, **{name: value})).load_state(
                tmp_path / "state")
            allowed.add(name)
        except CnnkitError as e:
            assert "different configuration" in str(e) and name in str(e), str(e)
    assert allowed == set(RESUMABLE) & set(TRAIN_CHANGES)  # dry_run was let through
