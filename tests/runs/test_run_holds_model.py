"""A run directory holds everything its resume needs: the model as the run began (model/),
used from any current directory whatever became of the file --model named; a state that does
not match its checksum or its history is refused in one line; so is a resume to fewer epochs
than already trained. Each refusal changes nothing in the run directory."""
from __future__ import annotations

import json

import pytest

import cnnkit
from cnnkit.cli import main

MODEL = """input_shape: [8, 8, 1]
layers:
  - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
  - Flatten: {}
  - Dropout: {rate: 0.1}
  - Dense: {units: 10, activation: softmax}
"""


def _files(run) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def trained(tmp_path, monkeypatch, capsys):
    """A 2-epoch run of a model file named relative to the directory it was started in."""
    start = tmp_path / "project"
    start.mkdir()
    monkeypatch.chdir(start)
    (start / "cnn.yaml").write_text(MODEL)
    assert main(["train", "--model", "cnn.yaml", "--dataset", "digits", "--epochs", "2",
                 "--limit", "300", "--out", "runs/a", "--quiet"]) == 0
    capsys.readouterr()
    return start / "runs" / "a"


def _dropout(model) -> float:
    return next(c["Dropout"]["rate"] for c in model.get_config()["layers"] if "Dropout" in c)


def test_resume_builds_the_runs_own_copy_from_anywhere_whatever_became_of_the_file(
        trained, tmp_path, monkeypatch, capsys):
    assert _dropout(cnnkit.load(f"saved:{trained / 'model'}")) == 0.1  # kept at the start
    (trained.parent.parent / "cnn.yaml").write_text(MODEL.replace("0.1", "0.5"))  # edited...
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ...and resumed from another directory, where no cnn.yaml is
    assert main(["train", "--resume", str(trained), "--epochs", "3", "--quiet"]) == 0, \
        capsys.readouterr().err
    assert len((trained / "history.csv").read_text().splitlines()) == 1 + 3
    assert _dropout(cnnkit.load(str(trained))) == 0.1  # the model the run began with
    config = json.loads((trained / "config.json").read_text())
    assert config["options"]["model"] == "cnn.yaml" and len(config["resumed"]) == 1


def _refused(run, capsys, *argv) -> str:
    before = _files(run)
    assert main(["train", "--resume", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert _files(run) == before  # nothing changed
    return err


def test_a_resume_to_fewer_epochs_than_trained_is_refused(trained, capsys):
    err = _refused(trained, capsys, "--epochs", "1")
    assert f"--epochs 1: {trained} has already trained 2; valid: --epochs >= 2" in err, err
    err = _refused(trained, capsys, "--epochs", "2")  # finished: not scored again
    assert "there is nothing left to train" in err and "--epochs 3" in err, err


def test_an_edited_state_is_refused_by_its_checksum_then_by_its_history(trained, capsys):
    state = trained / "state" / "state.json"
    tree = json.loads(state.read_text())
    tree["epoch"] = 1  # as if one epoch fewer had run: the next would be trained again
    state.write_text(json.dumps(tree))
    err = _refused(trained, capsys)
    assert f"{state}: does not match its checksum in SHA256SUMS" in err, err
    (trained / "state" / "SHA256SUMS").unlink()  # no checksum to go by: the history says so
    err = _refused(trained, capsys)
    assert "epoch 1 does not match its history of 2 epochs" in err, err


def test_a_relative_folder_dataset_resumes_from_another_directory(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    start = tmp_path / "project"
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (start / "photos" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (8, 8), np.uint8)).save(
                start / "photos" / label / f"{i}.png")
    monkeypatch.chdir(start)
    assert main(["train", "--model", "seed000-first", "--dataset", "folder:photos", "--epochs",
                 "1", "--out", "runs/x", "--quiet"]) == 0, capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no photos/ here

    assert main(["train", "--resume", str(start / "runs" / "x"), "--epochs", "2",
                 "--quiet"]) == 0, capsys.readouterr().err
    run = start / "runs" / "x"
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 2
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["dataset"] == "folder:photos"  # as typed
    assert config["resolved"]["dataset"]["absolute"] == f"folder:{start / 'photos'}"
