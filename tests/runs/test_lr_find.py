"""The learning-rate finder (issue 30, item 2): `cnnkit lr-find` runs the trainer with a
rising rate for at most 100 steps, draws the loss against the rate and suggests one, writing
nothing else; `--lr find` trains at the suggestion, records it and its plot in config.json,
and starts from the same initial weights as any other rate; on digits the suggestion trains
in 3 epochs at least as well as the default rate, within 0.5 point."""
import json

import numpy as np
import pytest

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.io.tensors import read_safetensors
from cnnkit.train.lr_find import END, START, LRRamp, suggest

SPEC = dict(model="seed003-cnn", dataset="digits", epochs=3, seed=1, verbose=0)


def test_the_ramp_is_exponential_from_start_to_end():
    ramp = LRRamp(100)
    rates = [ramp.rate(i) for i in range(100)]
    assert rates[0] == pytest.approx(START) and rates[-1] == pytest.approx(END)
    assert np.allclose(np.diff(np.log(rates)), np.log(END / START) / 99)


def test_the_suggestion_is_where_the_loss_falls_fastest():
    lrs = np.geomspace(1e-7, 10, 100)
    # a loss that falls fastest at 1e-3 (in log rate), then blows up past 1
    loss = 2.3 - 2.0 / (1 + np.exp(-(np.log10(lrs) + 3) * 2.5)) + np.where(lrs > 1, lrs, 0)
    assert suggest(lrs, loss) == pytest.approx(1e-3, rel=0.3)
    with pytest.raises(ValueError):
        suggest(lrs[:2], loss[:2])


def test_lr_find_writes_its_plot_and_nothing_else(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["lr-find", "--model", "seed003-cnn", "--dataset", "digits", "--seed", "1",
                 "--json", "--out", "finder.png"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finder.png"]
    assert (tmp_path / "finder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert found["plot"] == "finder.png" and 3 <= found["steps"] <= 100
    assert START < found["suggested"] < END


def test_a_bad_rate_names_find():
    with pytest.raises(CnnkitError, match="a number > 0, or 'find'"):
        cnnkit.RunSpec(lr=-1, **SPEC).resolved().train_config()


def test_lr_find_trains_as_well_as_the_default_rate(tmp_path):
    default = cnnkit.run(cnnkit.RunSpec(out=str(tmp_path / "default"), **SPEC))
    found = cnnkit.run(cnnkit.RunSpec(lr="find", out=str(tmp_path / "find"), **SPEC))
    config = json.loads((tmp_path / "find" / "config.json").read_text())
    rate = config["resolved"]["lr_find"]["suggested"]
    assert config["options"]["train"]["lr"] == rate and found.history["lr"][0] == rate
    assert config["resolved"]["lr_find"]["plot"] == "lr_find.png"
    assert (tmp_path / "find" / "lr_find.png").is_file()
    # the finder's own steps left the random state alone: the same initial weights
    assert all(np.array_equal(a, b) for a, b in zip(
        read_safetensors(tmp_path / "default" / "model" / "weights.safetensors").values(),
        read_safetensors(tmp_path / "find" / "model" / "weights.safetensors").values()))
    assert found.metrics["test_accuracy"] >= default.metrics["test_accuracy"] - 0.005


def test_find_is_for_a_run_not_a_bare_trainer():
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    model = cnnkit.create_model("seed003-cnn")
    with pytest.raises(CnnkitError, match="lr='find' is the learning-rate finder's, for a run"):
        Trainer(model, TrainConfig(lr="find"))
