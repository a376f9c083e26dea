"""`tune` over a graph layer's argument: `layers.<name or index>.<argument>` edits that entry of
the graph's description (its `inputs` kept), each trial trains the edited graph."""
from __future__ import annotations

import json

import pytest
import yaml

import cnnkit
from _graph_helpers import RESIDUAL_YAML
from cnnkit.errors import CnnkitError
from cnnkit.model.graph import model_from_config


def _input_shape_form() -> dict:
    """The same graph with its input given as Sequential files give it (`input_shape`, no
    InputLayer entry): conv_a is then entry 1, its name still conv_a."""
    graph = yaml.safe_load(RESIDUAL_YAML)
    graph["input_shape"] = graph["layers"].pop(0)["InputLayer"]["shape"]
    graph["layers"][0]["Conv2D"]["inputs"] = ["input_layer"]
    return graph


@pytest.mark.parametrize("form,key", [("InputLayer entry", "layers.conv_a.filters"),
                                      ("InputLayer entry", "layers.2.filters"),
                                      ("input_shape key", "layers.conv_a.filters")])
def test_a_two_trial_tune_over_a_graph_convolutions_filters(form, key, tmp_path):
    graph = yaml.safe_load(RESIDUAL_YAML) if form == "InputLayer entry" else _input_shape_form()
    space = {"base": {"model": graph, "dataset": "digits", "epochs": 1, "batch_size": 64,
                      "seed": 0},
             "space": {key: {"choice": [4, 12]}},
             "objective": {"metric": "val_accuracy", "direction": "maximize"}}
    study = cnnkit.tune(space, n_trials=2, sampler="grid", pruner="none", seed=0,
                        out=tmp_path / "study", verbose=0)

    assert sorted(t["params"][key] for t in study.trials) == [4, 12]
    for trial in sorted((tmp_path / "study" / "trials").iterdir()):
        spec = json.loads((trial / "config.json").read_text())
        model = model_from_config(spec["options"]["model"])
        rows = {r.name: r for r in model.layer_infos()}
        filters = rows["conv_a"].output_shape[-1]
        assert filters in (4, 12)
        assert rows["conv_a"].trainable == filters * (8 * 9 + 1)  # 8 channels in, 3x3 kernels
        add = model.layer_names().index("add")
        assert [model.layer_names()[j] for j in model.inbound[add]] == ["stem", "conv_b"]
        assert json.loads((trial / "metrics.json").read_text())["epochs_run"] == 1


def test_an_argument_the_graph_layer_lacks_is_one_clear_line():
    graph = yaml.safe_load(RESIDUAL_YAML)
    with pytest.raises(CnnkitError, match="Conv2D layer 'conv_a' has no argument 'units'"):
        cnnkit.tune({"base": {"model": graph, "dataset": "digits", "epochs": 1},
                     "space": {"layers.conv_a.units": {"choice": [4, 8]}}}, n_trials=1,
                    verbose=0)
