"""`cnnkit.run(RunSpec)` on real models and real data: the results come back, `out=None`
writes nothing, artifacts choose what is written, resume continues exactly, and the CLI is
the same call (`--config`, `--resume`, `--help`)."""
import csv
import json

import numpy as np
import pytest

import cnnkit
from cnnkit import RunSpec
from cnnkit.cli import main
from cnnkit.errors import CnnkitError

BASE = dict(model="seed003-cnn", dataset="digits", batch_size=64, seed=1, verbose=0)


def no_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "time"}


def csv_rows(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """Two epochs with validation, written to a run directory."""
    out = tmp_path_factory.mktemp("runs") / "a"
    return cnnkit.run(RunSpec(**BASE, epochs=2, val_split=0.2, out=str(out)))


def test_results_come_back_from_the_call(run_a):
    r = run_a
    assert r.metrics["test_accuracy"] > 0.5 and r.metrics["test_images"] == 360
    assert len(r.history["val_loss"]) == 2 and len(r.history["loss"]) == 2
    assert r.metrics == json.loads((r.run_dir / "metrics.json").read_text())
    assert r.spec.epochs == 2 and r.spec.seed == 1 and r.spec.optimizer == "adam"
    # the model that comes back is the best epoch's, the one best/ holds
    best = cnnkit.load(r.run_dir / "best")
    x = cnnkit.data.load_dataset("digits").x_train[:64].numpy()
    assert np.array_equal(r.model.predict(x), best.predict(x))
    assert r.report["accuracy"] == r.metrics["test_accuracy"]
    assert "test_accuracy=" in repr(r)


def test_evaluate_a_run_from_python_gives_its_test_score(run_a):
    ev = cnnkit.evaluate(run_a.run_dir)
    assert ev.accuracy == run_a.metrics["test_accuracy"] and len(ev.y) == 360
    assert ev.report["loss"] == pytest.approx(run_a.metrics["test_loss"], abs=1e-12)
    on_train = cnnkit.evaluate(run_a.model, dataset="digits", split="train")
    assert on_train.split == "train" and len(on_train.y) == 1797
    with pytest.raises(CnnkitError, match="unknown split 'val'"):
        cnnkit.evaluate(run_a.run_dir, split="val")


def test_in_memory_run_writes_nothing_and_gives_the_same_numbers(run_a, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cnnkit.run(RunSpec(**BASE, epochs=2, val_split=0.2))
    assert list(tmp_path.iterdir()) == [] and r.run_dir is None
    assert no_time(r.history) == no_time(run_a.history)
    assert r.metrics["test_accuracy"] == run_a.metrics["test_accuracy"]
    assert r.metrics["test_loss"] == run_a.metrics["test_loss"]  # same best epoch, in memory


def test_artifacts_metrics_writes_only_the_numbers_and_the_state(run_a, tmp_path):
    out = tmp_path / "m"
    r = cnnkit.run(RunSpec(**BASE, epochs=2, val_split=0.2, out=str(out), artifacts="metrics"))
    assert {p.name for p in out.iterdir()} == {"config.json", "history.csv", "metrics.json",
                                               "state", "model", ".lock"}  # model: for resume
    assert r.metrics["test_accuracy"] == run_a.metrics["test_accuracy"]


def test_resume_continues_exactly(tmp_path):
    full = cnnkit.run(RunSpec(**BASE, epochs=3, val_split=0.2, out=str(tmp_path / "full")))
    cnnkit.run(RunSpec(**BASE, epochs=1, val_split=0.2, out=str(tmp_path / "part")))
    more = cnnkit.resume(tmp_path / "part", epochs=3)
    assert no_time(more.history) == no_time(full.history)
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    assert config["options"]["train"]["epochs"] == 3 and len(config["resumed"]) == 1
    assert "out" not in config["options"]  # the same file run again gets a directory of its own
    assert more.metrics["test_accuracy"] == full.metrics["test_accuracy"]
    assert csv_rows(tmp_path / "part" / "history.csv") == csv_rows(tmp_path / "full" / "history.csv")


def test_resume_refuses_a_changed_option(run_a):
    with pytest.raises(CnnkitError) as e:
        cnnkit.run(RunSpec(out=str(run_a.run_dir), lr=0.5), resume=True)
    assert f"lr=0.5 differs from what {run_a.run_dir} was trained with (unset: the default)" \
        in str(e.value)
    assert e.value.option == "lr"


def test_train_config_repeats_a_run_from_its_config_json(run_a, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["train", "--config", str(run_a.run_dir / "config.json"), "--quiet",
                 "--out", str(again)]) == 0
    assert csv_rows(again / "history.csv") == csv_rows(run_a.run_dir / "history.csv")
    # flags override the file
    other = tmp_path / "other"
    assert main(["train", "--config", str(run_a.run_dir / "config.json"), "--quiet",
                 "--epochs", "1", "--out", str(other)]) == 0
    assert len(csv_rows(other / "history.csv")) == 1


def test_train_config_from_a_yaml_run_file(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("model: seed003-cnn\ndataset: digits\nepochs: 1\nbatch_size: 64\nseed: 2\n"
                    "val_split: 0.1\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(spec), "--quiet", "--out", str(out)]) == 0
    options = json.loads((out / "config.json").read_text())["options"]
    assert options["val_split"] == 0.1 and options["train"]["seed"] == 2
    assert json.loads((out / "config.json").read_text())["command"] == [
        "cnnkit", "train", "--config", str(spec), "--quiet", "--out", str(out)]


def test_val_split_zero_means_no_validation(tmp_path):
    r = cnnkit.run(RunSpec.from_recipe("seed002", dataset="digits", val_split=0, epochs=1,
                                       early_stopping=None, seed=1, verbose=0))
    assert r.metrics["val_images"] == 0 and "val_loss" not in r.history


def test_resume_rejects_flags_that_would_change_the_run(run_a, capsys):
    assert main(["train", "--resume", str(run_a.run_dir), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--lr cannot be given with --resume" in err and err.count("\n") == 1


def test_resume_of_a_finished_run_with_more_epochs(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", "1",
                 "--batch-size", "64", "--seed", "4", "--quiet", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert len(csv_rows(out / "history.csv")) == 2
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


def test_a_preset_rebuilt_for_other_data_says_so(tmp_path, capsys):
    out = tmp_path / "adapted"
    assert main(["train", "--model", "seed001-example", "--dataset", "digits", "--epochs", "1",
                 "--batch-size", "64", "--seed", "1", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    line = ("preset seed001-example is defined for 24×24×3 images and 3 classes; rebuilt with "
            "the same layers for digits's 8×8×1 images and 10 classes")
    assert line in said
    assert line in (out / "report.md").read_text()
    assert json.loads((out / "config.json").read_text())["resolved"]["model_note"] == line


def test_train_help_shows_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    for expected in ("passes over the training data (default: 10)", "(default: 32)",
                     "(default: adam)", "(default: sparse_categorical_crossentropy)",
                     "A --recipe or a --config file sets its own values"):
        assert expected in text, expected


def test_keras_style_compile_fit_evaluate_predict_on_a_real_model():
    """The README's Python API, on sklearn's digits."""
    from cnnkit import Sequential, layers as L
    from cnnkit.data import load_dataset
    from cnnkit.train.callbacks import EarlyStopping

    data = load_dataset("digits")
    x, y = data.x_train.numpy(), data.y_train.numpy()
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu", padding="same"),
                        L.MaxPooling2D(2), L.Flatten(), L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:1400], y[:1400], epochs=6, batch_size=32, validation_split=0.2, seed=0,
                        verbose=0, callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])
    assert 1 <= len(history.history["val_loss"]) <= 6
    scores = model.evaluate(x[1400:] / 255.0, y[1400:])  # floats in [0, 1] work too
    assert set(scores) == {"loss", "accuracy"} and scores["accuracy"] > 0.8
    probs = model.predict(x[1400])  # one image, without a batch axis
    assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-5
    batch = model.predict(x[1400:])
    assert (batch.argmax(1) == y[1400:]).mean() == pytest.approx(scores["accuracy"], abs=1e-9)


DIVERGES = ["--model", "seed003-cnn", "--dataset", "digits", "--optimizer", "sgd", "--lr", "1e12",
            "--epochs", "2", "--batch-size", "64", "--seed", "1", "--quiet"]


def test_a_loss_that_diverges_in_epoch_1_says_so_and_leaves_no_stuck_directory(tmp_path, capsys):
    out = tmp_path / "nan"
    assert main(["train", *DIVERGES, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the loss became nan in epoch 1" in err and "lower the learning rate" in err
    assert err.count("\n") == 1 and "state" not in err.split("starts it afresh")[0]
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json", "model"]
    # the same --out, with a learning rate that works, starts afresh: nothing to delete by hand
    fixed = [a if a != "1e12" else "0.01" for a in DIVERGES]
    assert main(["train", *fixed, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["options"]["train"]["lr"] == 0.01
    assert (out / "metrics.json").is_file()


def test_a_run_killed_before_its_first_epoch_resumes_from_the_beginning(run_a, tmp_path, capsys):
    early = tmp_path / "early"
    early.mkdir()
    (early / "config.json").write_bytes((run_a.run_dir / "config.json").read_bytes())
    (early / ".config.json.x1y2.tmp").write_text("{")  # a write cut short by the kill
    assert main(["train", "--resume", str(early), "--quiet"]) == 0
    assert csv_rows(early / "history.csv") == csv_rows(run_a.run_dir / "history.csv")
    assert not list(early.glob(".*.tmp"))


def test_in_memory_divergence_is_an_error_not_a_nan_report():
    with pytest.raises(CnnkitError, match="the loss became nan in epoch 1"):
        cnnkit.run(RunSpec(model="seed003-cnn", dataset="digits", optimizer="sgd", lr=1e12,
                           epochs=2, batch_size=64, seed=1, verbose=0))
