"""One way to say each thing, across every `cnnkit` command: help on every argument, the shared
flags (cnnkit.cli.flags.SHARED) with one name, metavar and opening words everywhere, choices
written as `a|b|c`, --out saying where a command writes, a "did you mean" for a misspelled flag,
command or name, and Keras's spellings of optimizers and losses."""
import argparse
import json

import pytest

from cnnkit.cli import build_parser, main
from cnnkit.cli.flags import OUT_METAVARS, SHARED, help_of


def commands():
    """(`cnnkit data show`, its parser) for every command and subcommand."""
    todo = [("cnnkit", build_parser())]
    while todo:
        name, parser = todo.pop(0)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            todo += [(f"{name} {n}", p) for n, p in subs[0].choices.items()]
        else:
            yield name, parser


ARGUMENTS = [(name, a) for name, p in commands() for a in p._actions
             if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def key(action) -> str:
    """A flag by its long name, a positional by its metavar (MODEL_OR_RUN)."""
    return action.option_strings[-1] if action.option_strings else action.metavar or action.dest


def test_the_walk_reaches_every_command():
    names = {name for name, _ in commands()}
    assert {"cnnkit train", "cnnkit evaluate", "cnnkit data show", "cnnkit data augment",
            "cnnkit serve", "cnnkit export", "cnnkit cache"} <= names
    assert len(names) >= 20


def test_every_argument_has_help():
    missing = [f"{name} {key(a)}" for name, a in ARGUMENTS
               if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_a_shared_flag_has_one_metavar_and_one_opening(flag):
    metavar, _ = SHARED[flag]
    found = [(name, a) for name, a in ARGUMENTS if key(a) == flag]
    assert len(found) >= 2, f"{flag} is shared by fewer than two commands"
    for name, a in found:
        assert (name, a.metavar) == (name, metavar)
        assert a.help.startswith(help_of(flag)), (name, a.help)


def test_the_model_and_dataset_positionals_are_written_one_way():
    for name, a in ARGUMENTS:
        if not a.option_strings and a.dest in ("model", "dataset"):
            assert a.metavar == {"model": "MODEL_OR_RUN", "dataset": "DATASET"}[a.dest], name


def test_choices_are_written_as_their_metavar():
    """`--runtime torch|onnx|auto` everywhere: never argparse's `{auto,torch,onnx}`."""
    for name, a in ARGUMENTS:
        if a.choices is not None and not isinstance(a, argparse._SubParsersAction):
            assert a.metavar == "|".join(a.choices), (name, key(a))
    for name, parser in commands():
        assert "{" not in parser.format_usage(), name


def test_out_says_where_each_command_writes():
    outs = [(name, a) for name, a in ARGUMENTS if key(a) == "--out"]
    assert len(outs) >= 12
    for name, a in outs:
        assert a.metavar in OUT_METAVARS, (name, a.metavar)
        assert "(default: " in a.help or "(required)" in a.help, (name, a.help)
        assert not a.required or "(required)" in a.help, name


@pytest.mark.parametrize("argv, line", [
    (["train", "--validation-split", "0.2"], "cnnkit train: error: unrecognized arguments: "
     "--validation-split 0.2; did you mean --val-split? (see cnnkit train --help)"),
    (["train", "--epoch", "3"], "cnnkit train: error: unrecognized arguments: --epoch 3; "
     "did you mean --epochs? (see cnnkit train --help)"),  # not taken as an abbreviation
    (["data", "show", "digits", "--sed=3"], "cnnkit data show: error: unrecognized arguments: "
     "--sed=3; did you mean --seed? (see cnnkit data show --help)"),
    (["train", "--bogus", "1"],  # nothing close: no guess
     "cnnkit train: error: unrecognized arguments: --bogus 1 (see cnnkit train --help)"),
])
def test_a_misspelled_flag_names_the_closest(argv, line, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_misspelled_command_names_the_closest(capsys):
    with pytest.raises(SystemExit) as e:
        main(["trian"])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith("; did you mean 'train'? (see cnnkit --help)")


@pytest.mark.parametrize("argv, end", [
    (["train", "--dataset", "digits", "--optimizer", "adma"], "did you mean 'adam'?"),
    (["train", "--dataset", "digits", "--loss", "sparse_categorical_crossentropi"],
     "did you mean 'sparse_categorical_crossentropy'?"),
    (["train", "--dataset", "digits", "--recipe", "fats"], "did you mean 'fast'?"),
    (["data", "show", "fashion-mnst"], "did you mean 'fashion-mnist'?"),
    (["summary", "seed003-cn"], "did you mean 'seed003-cnn'?"),
    (["train", "--dataset", "digits", "--schedule", "cosin"], "did you mean 'cosine'?"),
])
def test_a_misspelled_name_names_the_closest(argv, end, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("cnnkit: error: unknown ") and err[0].endswith(end)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_name_with_nothing_close_gets_no_guess():
    from cnnkit.errors import one_of

    assert str(one_of("optimizer", "xyz", ["adam", "sgd"])) == \
        "unknown optimizer 'xyz'; valid: adam, sgd"


@pytest.mark.parametrize("given, optimizer, loss", [
    (("Adam", "SparseCategoricalCrossentropy"), "adam", "sparse_categorical_crossentropy"),
    (("RMSprop", "MeanSquaredError"), "rmsprop", "mse"),
    (("SGD", "MSE"), "sgd", "mse"),
    (("nadam", "mean_absolute_error"), "nadam", "mae"),
])
def test_optimizers_in_any_case_and_losses_as_keras_spells_them(given, optimizer, loss):
    from cnnkit.train.config import TrainConfig

    config = TrainConfig(optimizer=given[0], loss=given[1])
    assert (config.optimizer, config.loss) == (optimizer, loss)


def test_a_loss_keras_refuses_is_refused():
    """keras.losses.get("Sparse_Categorical_Crossentropy") raises in Keras 3: here too."""
    from cnnkit.errors import CnnkitError
    from cnnkit.train.config import TrainConfig

    with pytest.raises(CnnkitError, match="did you mean 'sparse_categorical_crossentropy'"):
        TrainConfig(loss="Sparse_Categorical_Crossentropy")


def test_train_records_keras_spellings_by_the_registry_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "digits", "--model", "seed003-cnn", "--optimizer", "Adam",
                 "--loss", "SparseCategoricalCrossentropy", "--epochs", "1", "--dry-run",
                 "--artifacts", "metrics", "--threads", "1", "--quiet", "--out", "r"]) == 0
    train = json.loads((tmp_path / "r" / "config.json").read_text())["options"]["train"]
    assert (train["optimizer"], train["loss"]) == ("adam", "sparse_categorical_crossentropy")


def test_evaluate_writes_under_runs_not_beside_the_model_file(tmp_path, monkeypatch, capsys):
    """`cnnkit evaluate models/tiny.yaml` used to write ./evaluate-tiny.yaml/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.yaml").write_text(
        "input_shape: [8, 8, 1]\nlayers:\n  - Flatten: {}\n  - Dense: {units: 10, "
        "activation: softmax}\n")
    assert main(["evaluate", "models/tiny.yaml", "--dataset", "digits", "--split", "train",
                 "--threads", "1", "--json"]) == 0
    images = json.loads(capsys.readouterr().out)["images"]
    assert images["confusion_matrix"] == "runs/evaluate-tiny/confusion_matrix.png"
    assert sorted(p.name for p in (tmp_path / "runs" / "evaluate-tiny").iterdir()) == [
        "confusion_matrix.png", "mistakes.png", "reliability.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "runs"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny.yaml"]


@pytest.mark.parametrize("argv", [
    ["predict", "m", "a.png", "--threads", "0"],
    ["evaluate", "m", "--threads", "two"],
    ["serve", "m", "--threads", "-1"],
    ["export", "m", "--out", "m.onnx", "--threads", "x"],
])
def test_threads_outside_training_take_a_count_or_auto(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threads: invalid value" in err and "valid: an integer >= 1 or auto" in err
    auto = argv[:argv.index("--threads")] + ["--threads", "auto"]
    assert build_parser().parse_args(auto).threads is None


def test_plot_model_inspect_and_augment_write_under_runs_without_out(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    pixels = np.arange(784, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(pixels).save(tmp_path / "images" / "x.png")
    assert main(["plot-model", "seed003-cnn"]) == 0
    assert main(["inspect", "seed003-cnn", "images/x.png", "--layer", "conv2d"]) == 0
    assert main(["data", "augment", "digits", "--n", "2", "--rotation-range", "10"]) == 0
    assert (tmp_path / "runs" / "augment-digits.png").stat().st_size > 0
    assert (tmp_path / "runs" / "plot-model-seed003-cnn.png").stat().st_size > 0
    drawn = sorted(p.name for p in (tmp_path / "runs" / "inspect-seed003-cnn-x").iterdir())
    assert "feature_maps_conv2d.png" in drawn
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["x.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "runs"]


def test_serve_refuses_an_unknown_runtime_in_one_line(capsys):
    assert main(["serve", "seed003-cnn", "--runtime", "tf", "--port", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cnnkit: error: unknown --runtime 'tf'; valid: auto, torch, onnx"]
