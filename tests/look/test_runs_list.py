"""`cnnkit runs` says what each folder holds: a run of your own nn.Module by its class, a run on
the first N images (--limit) marked as such, and studies and cross-validations listed below the
runs with their best figures."""
import csv
import json

import pytest
import torch

import cnnkit
from cnnkit.cli import main

TINY = {"input_shape": [8, 8, 1], "layers": [
    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
    {"Dense": {"units": 10, "activation": "softmax"}}]}


class DigitsNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    small = dict(dataset="digits", epochs=1, batch_size=64, seed=0, verbose=0)
    cnnkit.run(cnnkit.RunSpec(model=TINY, limit=300, out=str(root / "cut"), **small))
    cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", out=str(root / "whole"), **small))
    cnnkit.run(cnnkit.RunSpec(model=DigitsNet(), out=str(root / "mine"), **small))
    cnnkit.tune({"base": {"model": TINY, **small, "limit": 300, "val_split": 0.2},
                 "space": {"lr": {"choice": [0.01, 0.003]}}},
                sampler="grid", seed=0, out=root / "study", verbose=0)
    cnnkit.cross_validate(cnnkit.RunSpec(model=TINY, **small), folds=2, out=root / "cv")
    return root


def _cli(capsys, *argv):
    assert main(["runs", *map(str, argv)]) == 0
    return capsys.readouterr().out


def test_the_table_names_a_module_by_its_class_and_marks_a_cut_dataset(root, capsys):
    lines = {line.split()[0]: line for line in _cli(capsys, root).splitlines() if line}
    assert "DigitsNet" in lines["mine"].split()
    assert "digits (--limit 300)" in lines["cut"]
    assert "--limit" not in lines["whole"] and "--limit" not in lines["mine"]
    rows = {r["name"]: r for r in json.loads(_cli(capsys, root, "--json"))["runs"]}
    assert rows["mine"]["model"] == "DigitsNet"
    assert rows["cut"]["limit"] == 300 and rows["whole"]["limit"] is None


def test_studies_and_cross_validations_are_listed_with_their_best_figures(root, capsys):
    out = _cli(capsys, root)
    runs_part, groups_part = out.split("\n\n")
    assert "study" not in runs_part.split() and "cv" not in runs_part.split()
    head, *lines = groups_part.splitlines()
    assert head.split()[:4] == ["study", "or", "cv", "kind"]
    shown = {line.split()[0]: line for line in lines}
    assert set(shown) == {"study", "cv"}

    with open(root / "study" / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    best = max(trials, key=lambda t: float(t["value"]))
    assert shown["study"].split()[1] == "study"
    assert "digits (--limit 300)" in shown["study"] and "2 of 2 trials (grid)" in shown["study"]
    assert f"val_accuracy {float(best['value']):.4f} (trial {best['number']})" in shown["study"]

    folds = json.loads((root / "cv" / "folds.json").read_text())
    assert shown["cv"].split()[1] == "cv" and "2 folds" in shown["cv"]
    mean, std = folds["mean"]["test_accuracy"], folds["std"]["test_accuracy"]
    assert f"test_accuracy {mean:.4f} ± {std:.4f}" in shown["cv"]

    data = json.loads(_cli(capsys, root, "--json"))
    assert {g["name"]: g["kind"] for g in data["studies"]} == {"study": "study", "cv": "cv"}
    assert data["unreadable"] == []


def test_a_corrupt_study_file_is_named_and_the_rest_still_list(root, tmp_path, capsys):
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(root / "whole", copy / "whole")
    (copy / "broken").mkdir()
    (copy / "broken" / "folds.json").write_text("{not json")
    assert main(["runs", str(copy)]) == 0
    captured = capsys.readouterr()
    assert "whole" in captured.out and "broken" not in captured.out
    assert captured.err.startswith(f"cnnkit: skipped {copy / 'broken' / 'folds.json'}")
