"""RunSpec: one typed description of a run, recipes applied, checked before anything runs,
and the same in Python, in a file and in a run's config.json."""
import dataclasses
import json

import pytest

from cnnkit import RunSpec
from cnnkit.errors import CnnkitError
from cnnkit.train.config import TrainConfig


def test_from_recipe_applies_the_recipe_and_overrides_win():
    spec = RunSpec.from_recipe("fast", epochs=2)
    assert (spec.model, spec.dataset, spec.recipe) == ("fast-cnn-dense", "fashion-mnist", "fast")
    assert spec.epochs == 2 and spec.lr == 8e-3 and spec.schedule == "onecycle"
    assert spec.label_smoothing == 0.1 and spec.batch_size == 128
    # what neither sets comes from the defaults
    assert spec.optimizer == "adam" and spec.artifacts == "full" and spec.val_split == 0.0


def test_resolved_fills_defaults_records_a_seed_and_is_idempotent():
    spec = RunSpec(model="seed003-cnn", dataset="digits").resolved()
    assert spec.epochs == TrainConfig().epochs and spec.batch_size == 32
    assert isinstance(spec.seed, int)
    assert spec.resolved() == spec
    assert RunSpec(model="seed003-cnn", dataset="digits", seed=7).resolved().seed == 7


def test_recipe_augmentation_is_merged_with_the_given_keys():
    spec = RunSpec.from_recipe("best", augment={"rotation_range": 10})
    assert spec.augment["horizontal_flip"] is True and spec.augment["rotation_range"] == 10


def test_an_explicit_val_split_of_zero_overrides_the_recipe():
    assert RunSpec.from_recipe("seed002").val_split == 0.2
    spec = RunSpec.from_recipe("seed002", val_split=0)
    assert spec.val_split == 0 and spec.val_from_test is False
    assert RunSpec.from_recipe("seed000").val_from_test is True  # seed 000 validates on test
    assert RunSpec.from_recipe("seed000", val_split=0.1).val_from_test is False


def test_every_training_option_is_a_run_option():
    train = {f.name for f in dataclasses.fields(TrainConfig)} - {"eval_batch_size", "compile"}
    assert train <= set(RunSpec.fields())


def test_round_trip_through_config_json_form():
    spec = RunSpec.from_recipe("best", seed=3, out="runs/x")
    options = json.loads(json.dumps(spec.to_options()))
    assert options["train"]["batch_size"] == 128  # config.json's nested form
    assert "out" not in options  # the run directory is where config.json is
    assert RunSpec.from_dict(options).resolved() == spec.replace(out=None)
    assert RunSpec.from_dict({"options": options, "command": None}).resolved() == spec.replace(out=None)


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "model: seed003-cnn\ndataset: digits\nepochs: 3\nlr: 0.002\naugment: {horizontal_flip: true}\n"),
    (".toml", 'model = "seed003-cnn"\ndataset = "digits"\nepochs = 3\nlr = 0.002\n[augment]\nhorizontal_flip = true\n'),
    (".json", '{"model": "seed003-cnn", "dataset": "digits", "train": {"epochs": 3, "lr": 0.002,'
              ' "augment": {"horizontal_flip": true}}}'),
])
def test_from_file_in_each_format(tmp_path, suffix, text):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    spec = RunSpec.from_file(path)
    assert (spec.model, spec.dataset, spec.epochs, spec.lr) == ("seed003-cnn", "digits", 3, 0.002)
    assert spec.augment == {"horizontal_flip": True}


def test_a_model_description_or_a_sequential_is_a_model():
    from cnnkit import Sequential, layers as L

    model = Sequential([L.Conv2D(8, 3, activation="relu"), L.Flatten(), L.Dense(10, activation="softmax")],
                       input_shape=(8, 8, 1), name="tiny")
    spec = RunSpec(model=model, dataset="digits")
    assert spec.model == model.get_config() and spec.model_label == "tiny"
    assert json.loads(json.dumps(spec.to_dict()))["model"]["layers"][0]["Conv2D"]["filters"] == 8


@pytest.mark.parametrize("kwargs,message", [
    ({"val_split": 1.5}, "val_split=1.5 is out of range; valid: 0 <= val_split < 1"),
    ({"epochs": 0}, "epochs=0 is out of range; valid: an integer >= 1"),
    ({"lr": -1.0}, "lr=-1.0 is out of range"),
    ({"artifacts": "all"}, "unknown artifacts 'all'; valid: full, metrics, none"),
    ({"early_stopping": -2}, "early_stopping=-2 is out of range"),
    ({"freeze": True}, "freeze needs init_from"),
    ({"optimizer": "adma"}, "unknown optimizer 'adma'"),
    ({"recipe": "seed999"}, "unknown recipe 'seed999'"),
    ({"model": None, "dataset": None}, "say what to train"),
])
def test_bad_values_are_one_line_in_the_options_own_words(kwargs, message):
    with pytest.raises(CnnkitError) as e:
        RunSpec(**{"model": "seed003-cnn", "dataset": "digits", **kwargs}).resolved()
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "--" not in str(e.value)  # the library speaks of options, not flags


def test_unknown_keys_in_a_file_are_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: seed003-cnn\ndataset: digits\nlearning_rate: 0.1\n")
    with pytest.raises(CnnkitError, match="unknown run option 'learning_rate'; valid: model"):
        RunSpec.from_file(path)
