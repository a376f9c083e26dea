"""A folder dataset laid out as Keras's seed 001 lays it out, `data/{train,validation}/<class>/`:
`folder:data` reads validation/ as the validation split, and a run validates on it (train is
not split, whatever val_split says) and says so in its log line."""
from __future__ import annotations

import json

import pytest
import torch

import cnnkit
from cnnkit.errors import CnnkitError


@pytest.fixture
def folder(tmp_path):
    from _keras_folders import write_digit_folders

    return write_digit_folders(tmp_path / "data", classes=(0, 1, 2), per_class=(30, 10), size=12)


def test_the_validation_folder_is_the_validation_split(folder):
    ds = cnnkit.data.load_dataset(f"folder:{folder}")
    assert ds.class_names == ["0", "1", "2"] and ds.image_shape == (12, 12, 3)
    assert len(ds.x_train) == 90 and len(ds.x_val) == 30 and not ds.has_test
    assert torch.bincount(ds.y_val).tolist() == [10, 10, 10]
    assert ds.info["layout"] == "train/validation"
    again = cnnkit.data.load_dataset(f"folder:{folder}")  # from the cache: the same split
    assert again.info["cached"] and torch.equal(again.x_val, ds.x_val)


def test_a_run_validates_on_it_and_says_so(folder, tmp_path, capsys):
    spec = cnnkit.RunSpec(model="seed003-cnn", dataset=f"folder:{folder}", epochs=1,
                          batch_size=16, val_split=0.2, seed=0, verbose=2,
                          out=str(tmp_path / "run"), artifacts="metrics")
    result = cnnkit.run(spec)
    log = capsys.readouterr().out
    # no test/: 20% of train is held out as the test split; validation/ is validation whole
    assert ("72 train / 30 validation (its validation/ folder; val_split=0.2 not used) / 18 test "
            "images") in log
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train_images"] == 72 and metrics["val_images"] == 30
    assert metrics["test_images"] == 18 and result.history["val_loss"][0] is not None
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["splits"] == {"train": 72, "val": 30, "test": 18}


def test_validation_classes_must_match_train(folder):
    import shutil

    shutil.rmtree(folder / "validation" / "2")
    with pytest.raises(CnnkitError, match=r"^validation classes \['0', '1'\] in '.*validation' "
                                          r"differ from train classes \['0', '1', '2'\]$"):
        cnnkit.data.load_dataset(f"folder:{folder}")
