"""`--mixup`, `--cutmix` and `--random-erasing` in a whole run: recorded in config.json, a
resumed run repeats the uninterrupted one, a resume may not change them, and bad values are one
line with exit 2 and nothing written."""
from __future__ import annotations

import json

import pytest

import cnnkit
from cnnkit.cli import main
from cnnkit.runs.spec import RunSpec

TINY = {"input_shape": [8, 8, 1], "layers": [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
    {"Dense": {"units": 10, "activation": "softmax"}}]}
FLAGS = {"mixup": ["--mixup", "0.4"], "cutmix": ["--cutmix", "1.0"],
         "random_erasing": ["--random-erasing", "0.5"]}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def _train(args, out, model_file):
    return main(["train", "--model", model_file, "--dataset", "digits", "--batch-size", "128",
                 "--seed", "3", "--threads", "1", "--artifacts", "metrics", "--label-smoothing",
                 "0.1", "--quiet", "--out", str(out), *args])


def _figures(out):
    m = json.loads((out / "metrics.json").read_text())
    return m["final_loss"], m["final_accuracy"], m["test_loss"], m["test_accuracy"]


@pytest.mark.parametrize("name", list(FLAGS))
def test_a_run_with_the_flag_trains_records_it_and_resumes_exactly(name, model_file, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _train([*FLAGS[name], "--epochs", "2"], whole, model_file) == 0
    options = json.loads((whole / "config.json").read_text())["options"]["train"]
    assert options[name] == float(FLAGS[name][1])
    assert _train([*FLAGS[name], "--epochs", "1"], part, model_file) == 0
    assert main(["train", "--resume", str(part), "--epochs", "2", "--quiet"]) == 0
    assert _figures(whole) == _figures(part)  # to the last digit


def test_mixing_changes_the_training_it_is_not_a_no_op(model_file, tmp_path):
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    assert _train(["--epochs", "1"], plain, model_file) == 0
    assert _train([*FLAGS["mixup"], "--epochs", "1"], mixed, model_file) == 0
    assert _figures(plain)[0] != _figures(mixed)[0]


def test_a_resume_may_not_change_them(model_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(["--epochs", "1"], out, model_file) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--mixup", "0.2"]) == 2
    assert "--mixup cannot be given with --resume" in capsys.readouterr().err
    with pytest.raises(cnnkit.CnnkitError, match="cutmix"):
        cnnkit.run(RunSpec(out=str(out), epochs=2, cutmix=1.0), resume=True)


def test_the_console_says_what_train_accuracy_means_under_mixing(model_file, tmp_path, capsys):
    assert main(["train", "--model", model_file, "--dataset", "digits", "--epochs", "1",
                 "--seed", "1", "--threads", "1", "--artifacts", "none", "--cutmix", "1",
                 "--out", str(tmp_path / "r")]) == 0
    assert "train accuracy counts an image right when the model predicts its dominant label" \
        in capsys.readouterr().out


@pytest.mark.parametrize("args, shown", [
    (["--mixup", "-0.5"], "--mixup -0.5 is out of range"),
    (["--cutmix", "nan"], "--cutmix nan is out of range"),
    (["--random-erasing", "1.5"], "--random-erasing 1.5 is out of range"),
    (["--random-erasing", "-1"], "--random-erasing -1.0 is out of range"),
])
def test_bad_values_exit_2_in_one_line_and_write_nothing(args, shown, model_file, tmp_path,
                                                          capsys):
    out = tmp_path / "bad"
    assert _train(args, out, model_file) == 2
    err = capsys.readouterr().err
    assert shown in err and "valid:" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert main(["cv", "--model", model_file, "--dataset", "digits", "--folds", "2",
                 "--out", str(out), *args]) == 2
    assert shown in capsys.readouterr().err and not out.exists()


def test_they_join_a_recipes_augmentation_and_a_search_space():
    spec = RunSpec(recipe="best", mixup=0.2, random_erasing=0.25).resolved()
    assert spec.augment["horizontal_flip"] is True  # the recipe's own augmentation stays
    assert (spec.mixup, spec.cutmix, spec.random_erasing, spec.label_smoothing) == (0.2, 0.0, 0.25, 0.1)
    from cnnkit.search.space import check_space, parse_space

    space = check_space(parse_space({"base": {"recipe": "fast"}, "space": {
        "mixup": {"uniform": [0.0, 0.4]}, "cutmix": {"choice": [0.0, 1.0]}}}, "space.yaml"))
    assert space.apply({"mixup": 0.3, "cutmix": 1.0}).resolved().cutmix == 1.0
    with pytest.raises(cnnkit.CnnkitError, match=r"mixup=-1 is out of range"):
        check_space(parse_space({"base": {"recipe": "fast"},
                                 "space": {"mixup": {"uniform": [-1, 0.4]}}}, "space.yaml"))
