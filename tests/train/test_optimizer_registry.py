"""A new optimizer is one class registered under one name, and then every way to train takes
it: TrainConfig (with its settings checked by the class), make_optimizer (the trainer's),
cnnkit.keras's `get`, the CLI's help and the error lines' lists of valid names."""
from __future__ import annotations

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.train.config import TrainConfig
from cnnkit.train.optim import make_optimizer
from cnnkit.train.optimizers import REGISTRY, Optimizer, register
from cnnkit.train.optimizers.base import number


@pytest.fixture
def signsgd():
    @register
    class SignSGD(Optimizer):
        """w -= lr·scale·sign(g)"""
        name = "signsgd"
        options = ("scale",)

        def __init__(self, learning_rate=0.01, scale=1.0, **common):
            super().__init__(learning_rate, **common)
            self.scale = number("scale", scale)

        def update(self, group, params, grads, states):
            for p, g in zip(params, grads):
                p.sub_(g.sign() * group["lr"] * group["scale"])

    yield SignSGD
    del REGISTRY["signsgd"]


def test_a_registered_optimizer_is_taken_everywhere(signsgd, capsys):
    from cnnkit.cli import build_parser
    from cnnkit.keras import optimizers

    cfg = TrainConfig(optimizer="signsgd", lr=0.1, optimizer_options={"scale": 2.0})
    p = torch.nn.Parameter(torch.zeros(3))
    opt = make_optimizer(cfg.optimizer, [p], cfg.lr, options=cfg.optimizer_options)
    p.grad = torch.tensor([3.0, -0.5, 0.0])
    opt.step()
    assert p.tolist() == pytest.approx([-0.2, 0.2, 0.0])
    assert isinstance(optimizers.get("SignSGD"), signsgd)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert "signsgd" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(CnnkitError, match="scale=-1 is out of range; valid: a number > 0"):
        TrainConfig(optimizer="signsgd", optimizer_options={"scale": -1})
    with pytest.raises(CnnkitError, match="momentum applies to sgd and rmsprop, not signsgd"):
        TrainConfig(optimizer="signsgd", momentum=0.9)


def test_unknown_names_list_the_registry(signsgd):
    with pytest.raises(CnnkitError, match="unknown optimizer 'adma'; valid: sgd, adagrad, "
                                          "rmsprop, adam, adamw, adadelta, adamax, nadam, ftrl, lion, signsgd"):
        TrainConfig(optimizer="adma")


@pytest.mark.parametrize("options, message", [
    ({"learning_rate": 0.1}, "give learning_rate as the training option lr"),
    ({"nesterov": True}, "give nesterov as the training option nesterov"),
    ("beta_2=0.9", "optimizer_options='beta_2=0.9' is out of range; valid: a dict"),
    ({"beta_2": 0.99, "amsgrad": 1}, "amsgrad=1 is out of range; valid: True or False"),
])
def test_optimizer_options_are_checked_where_the_config_is_made(options, message):
    with pytest.raises(CnnkitError, match=message):
        TrainConfig(optimizer="adam", optimizer_options=options)


def test_a_run_records_its_optimizer_options_and_resume_checks_them(tmp_path):
    """cnnkit.run with optimizer_options: config.json holds them, and resuming with others is
    refused as any other change of the arithmetic is."""
    import json

    import cnnkit
    from cnnkit.runs.spec import RunSpec

    spec = RunSpec(model="seed003-cnn", dataset="digits", epochs=1, batch_size=256, seed=0,
                   optimizer="adam", optimizer_options={"amsgrad": True, "beta_2": 0.99},
                   verbose=0, artifacts="metrics", out=str(tmp_path / "r"))
    cnnkit.run(spec)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["options"]["train"]
    assert saved["optimizer_options"] == {"amsgrad": True, "beta_2": 0.99}
    with pytest.raises(CnnkitError, match="optimizer_options"):
        cnnkit.run(spec.replace(epochs=2, optimizer_options={"amsgrad": False}), resume=True)


def test_the_registries_load_without_torch():
    """The CLI builds its help and checks a configuration from the registries without paying
    for torch's import."""
    import subprocess
    import sys

    code = ("import sys\nfrom cnnkit.cli import build_parser\nfrom cnnkit.train.config import "
            "TrainConfig\nbuild_parser()\nTrainConfig(optimizer='rmsprop', momentum=0.5, "
            "optimizer_options={'centered': True})\nprint('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compile_records_every_setting_as_train_options():
    from cnnkit.keras import optimizers

    assert optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True).train_options() == {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}
    assert optimizers.AdamW(weight_decay=None, amsgrad=True).train_options() == {
        "optimizer": "adamw", "weight_decay": 0.0, "optimizer_options": {"amsgrad": True}}
    assert optimizers.RMSprop().train_options() == {"optimizer": "rmsprop"}


@pytest.mark.parametrize("argv, line", [
    (["--weight-decay", "-1"], "--weight-decay -1.0 is out of range; valid: a number >= 0"),
    (["--optimizer", "adam", "--momentum", "0.9"], "momentum applies to sgd and rmsprop, not adam"),
])
def test_the_cli_says_what_the_optimizer_checks(argv, line, capsys, tmp_path):
    from cnnkit.cli import main

    out = tmp_path / "r"
    assert main(["train", "--model", "seed003-cnn", "--dataset", "digits", *argv,
                 "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"cnnkit: error: {line}"
    assert not out.exists()
