"""k-fold cross-validation on its own: `cnnkit.cross_validate`, `cnnkit cv`, `train --folds`."""
from __future__ import annotations

import json

import pytest
import yaml

import cnnkit
from cnnkit.cli import main
from _tune_helpers import TINY


def test_cross_validate_in_memory_gives_per_fold_metrics_and_disjoint_folds():
    spec = cnnkit.RunSpec(model=TINY, dataset="digits", epochs=1, batch_size=64, seed=1)
    result = cnnkit.cross_validate(spec, folds=3, verbose=0)
    assert [f["fold"] for f in result.folds] == [1, 2, 3] and result.out is None
    every = sorted(i for fold in result.indices for i in fold)
    assert every == list(range(len(every)))  # each training image validates exactly once
    assert [f["val_images"] for f in result.folds] == [len(f) for f in result.indices]
    accs = [f["val_accuracy"] for f in result.folds]
    assert result.mean["val_accuracy"] == pytest.approx(sum(accs) / 3)
    assert result.std["val_accuracy"] >= 0 and "mean ± std" in result.table()


@pytest.mark.parametrize("command", ["cv", "train"])
def test_cnnkit_cv_prints_a_fold_table_and_saves_the_folds(tmp_path, capsys, command):
    model = tmp_path / "tiny.yaml"
    model.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "cv"
    assert main([command, "--model", str(model), "--dataset", "digits", "--epochs", "1",
                 "--folds", "3", "--seed", "2", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "fold 3/3" in said and "mean ± std" in said
    saved = json.loads((out / "folds.json").read_text())
    assert saved["k"] == 3 and len(saved["folds"]) == 3 and len(saved["indices"]["val"]) == 3
    for i in (1, 2, 3):
        cfg = json.loads((out / f"fold-{i}" / "config.json").read_text())["options"]
        assert cfg["fold"]["index"] == i - 1 and cfg["val_split"] == 0
        assert not (out / f"fold-{i}" / "report.html").exists()  # a minimal run
    assert (out / "folds.png").is_file()


@pytest.mark.parametrize("folds, message", [
    ("1", "--folds 1 is out of range; valid: an integer >= 2"),
    ("500", "k=500 folds need at least 500 samples per class"),
])
def test_bad_folds_are_one_line_and_write_nothing(tmp_path, capsys, folds, message):
    out = tmp_path / "cv"
    assert main(["cv", "--model", "fast-cnn", "--dataset", "digits", "--folds", folds,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("fold, extra, message", [
    ({"k": 1, "index": 0}, {}, "'k': 1} is out of range"),
    ({"k": 3, "index": 3}, {}, "is out of range; valid: a mapping"),
    ({"k": 3, "index": 0}, {"val_split": 0.2}, "is its own validation split"),
])
def test_a_runspec_fold_is_checked(fold, extra, message):
    with pytest.raises(cnnkit.CnnkitError, match=message.replace("{", r"\{").replace("}", r"\}")):
        cnnkit.RunSpec(model="fast-cnn", dataset="digits", fold=fold, **extra).resolved()
