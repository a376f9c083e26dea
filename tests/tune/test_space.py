"""The search space file: what it may vary, and every mistake in it refused in one line, with
exit status 2 and nothing written."""
from __future__ import annotations

import pytest

from cnnkit.cli import main
from cnnkit.search.space import load_space
from _tune_helpers import BASE, write_space

FAST = {**BASE, "model": "fast-cnn"}  # a preset, rebuilt for the digits: 14 layers

GOOD = {"lr": {"log_uniform": [1e-3, 1e-2]}}


@pytest.mark.parametrize("space, flags, message", [
    ({"lrr": {"uniform": [0.1, 0.2]}}, [], "unknown option 'lrr'; valid: model, dataset, recipe"),
    ({"layers.conv9.filters": {"choice": [8, 16]}}, [],
     "layers.conv9.filters: unknown layer 'conv9'; valid: conv2d, max_pooling2d"),
    ({"layers.conv2d.filterz": {"choice": [8, 16]}}, [],
     "Conv2D layer 'conv2d' has no argument 'filterz'; valid: filters, kernel_size"),
    ({"layers.99.filters": {"choice": [8]}}, [], "the model has 14 layers"),
    ({"label_smoothing": {"uniform": [0.2, 0.1]}}, [],
     "label_smoothing: uniform [0.2, 0.1] is an empty range; valid: low < high"),
    ({"lr": {"log_uniform": [0, 0.1]}}, [], "needs low > 0"),
    ({"batch_size": {"choice": [0, 64]}}, [], "batch_size = 0 (from choice [0, 64]):"),
    ({"lr": {"gauss": [1, 2]}}, [], "unknown distribution 'gauss'; valid: choice, uniform"),
    ({"augment.spin": {"choice": [1, 2]}}, [], "unknown augmentation option 'spin'"),
    ({"lr": {"choice": [0.1, 0.2]}, "batch_size": {"choice": [32, 64]}},
     ["--sampler", "grid", "--trials", "3"],
     "the grid has 4 points, more than --trials 3; valid: --trials >= 4"),
    (GOOD, ["--sampler", "grid"], "grid search needs finite values; lr is log_uniform"),
    (GOOD, ["--sampler", "annealing"], "unknown sampler 'annealing'; valid: grid, random, tpe, gp"),
    (GOOD, ["--storage", "postgresql://nobody@127.0.0.1:1/none"],
     "cannot reach --storage postgresql+psycopg://nobody@127.0.0.1:1/none:"),
    (GOOD, ["--storage", "sqlite:///s.db", "--jobs", "2"],
     "cannot be shared by --jobs 2 workers: SQLite locks the whole file"),
    (GOOD, ["--jobs", "0"], "--jobs 0 is out of range; valid: an integer >= 1"),
    (GOOD, ["--jobs", "100000"], "--jobs 100000 is more than this machine runs at once: "),
    (GOOD, ["--folds", "1"], "--folds 1 is out of range; valid: an integer >= 2"),
])
def test_a_bad_space_or_option_is_one_line_and_writes_nothing(tmp_path, capsys, space, flags,
                                                              message):
    path = write_space(tmp_path / "space.yaml", space, base=FAST)
    out = tmp_path / "study"
    assert main(["tune", str(path), *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_metric_the_run_does_not_produce_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", GOOD, metric="val_f1")
    assert main(["tune", str(path), "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert "objective metric 'val_f1' is not produced by a run; valid: loss, accuracy" in err
    assert not (tmp_path / "study").exists()


def test_parameters_reach_the_run_options_the_augmentation_and_the_layers(tmp_path):
    space = load_space({"base": FAST, "space": {
        "lr": {"choice": [0.01]}, "augment.rotation_range": {"int": [0, 10]},
        "layers.conv2d_1.filters": {"choice": [7]}, "layers.0.kernel_size": {"choice": [5]}}})
    spec = space.apply({"lr": 0.01, "augment.rotation_range": 4, "layers.conv2d_1.filters": 7,
                        "layers.0.kernel_size": 5})
    assert spec.lr == 0.01 and spec.augment == {"rotation_range": 4}
    layers = spec.model["layers"]
    assert layers[0]["Conv2D"]["kernel_size"] == 5 and layers[4]["Conv2D"]["filters"] == 7
    assert spec.model["input_shape"] == [8, 8, 1]  # the preset, built for the digits
    from cnnkit.model.sequential import Sequential

    assert Sequential.from_config(spec.model).output_shape == (10,)


def test_a_grid_enumerates_every_point_once_in_order(tmp_path):
    space = load_space({"base": BASE, "space": {"lr": [0.1, 0.2], "batch_size": {"int": [32, 96, ], "step": 32}}})
    assert space.grid() == [{"lr": a, "batch_size": b} for a in (0.1, 0.2) for b in (32, 64, 96)]


@pytest.mark.parametrize("base, space, message", [
    ({"model": "fast-cnnn"}, GOOD, "base: unknown model 'fast-cnnn'"),
    ({}, {"layers.0.padding": {"choice": ["same", "valid"]}}, "layers.0.padding = 'valid'"),
])
def test_a_model_that_cannot_be_built_is_refused_before_any_trial(tmp_path, capsys, base,
                                                                  space, message):
    path = write_space(tmp_path / "space.yaml", space, base={**FAST, **base})
    assert main(["tune", str(path), "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "study").exists()


def test_the_issues_example_reads_as_written(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("base: {recipe: fast, epochs: 3, dataset: digits}\n"
                    "space:\n"
                    "  lr: {log_uniform: [1e-4, 1e-2]}\n"  # YAML 1.1 reads these as strings
                    "  batch_size: {choice: [64, 128, 256]}\n"
                    "  label_smoothing: {uniform: [0.0, 0.2]}\n"
                    "  layers.conv2d.filters: {choice: [16, 32]}\n"
                    "objective: {metric: val_accuracy, direction: maximize}\n")
    space = load_space(path)
    assert space.params[0].values == [1e-4, 1e-2] and space.base["val_split"] == 0.2
    spec = space.apply({"lr": 1e-3, "batch_size": 64, "label_smoothing": 0.1,
                        "layers.conv2d.filters": 32})
    assert spec.resolved().lr == 1e-3 and spec.model["layers"][0]["Conv2D"]["filters"] == 32
