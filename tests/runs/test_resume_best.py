"""A resumed run keeps and reports the model it really kept: its best epoch (lowest val_loss),
or its last where there is no validation, and says which (issue 26). Before the fix a resumed
run without validation kept best/ from the first leg and reported it as "best epoch 4"."""
import json

from safetensors.torch import load_file

import cnnkit
from cnnkit import RunSpec
from cnnkit.cli import main

BASE = dict(model="seed003-cnn", dataset="digits", batch_size=64, seed=3, verbose=0, threads=1,
            precision="fp32")


def same_weights(a, b) -> bool:
    wa, wb = load_file(str(a / "best" / "weights.safetensors")), load_file(
        str(b / "best" / "weights.safetensors"))
    return wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def test_resumed_run_without_validation_keeps_its_last_model(tmp_path):
    fresh = cnnkit.run(RunSpec(**BASE, epochs=4, out=str(tmp_path / "fresh")))
    cnnkit.run(RunSpec(**BASE, epochs=2, out=str(tmp_path / "part")))
    more = cnnkit.resume(tmp_path / "part", epochs=4)
    assert more.metrics["test_accuracy"] == fresh.metrics["test_accuracy"]
    assert more.metrics["test_loss"] == fresh.metrics["test_loss"]
    assert same_weights(tmp_path / "part", tmp_path / "fresh")
    metrics = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 4 and metrics["model_kept"] == "last epoch, no validation"
    assert "(model of the last epoch 4, no validation)" in (tmp_path / "part" / "report.md").read_text()


def test_resumed_run_with_validation_keeps_its_best_model(tmp_path):
    spec = dict(BASE, val_split=0.2)
    fresh = cnnkit.run(RunSpec(**spec, epochs=4, out=str(tmp_path / "fresh")))
    cnnkit.run(RunSpec(**spec, epochs=2, out=str(tmp_path / "part")))
    more = cnnkit.resume(tmp_path / "part", epochs=4)
    assert more.metrics["test_loss"] == fresh.metrics["test_loss"]
    assert more.metrics["best_epoch"] == fresh.metrics["best_epoch"]
    assert more.metrics["model_kept"] == "best val_loss"
    assert same_weights(tmp_path / "part", tmp_path / "fresh")


def test_cli_resume_prints_the_kept_models_score(tmp_path, capsys):
    args = ["--model", "seed003-cnn", "--dataset", "digits", "--seed", "3", "--threads", "1",
            "--precision", "fp32"]
    assert main(["train", *args, "--epochs", "4", "--out", str(tmp_path / "fresh")]) == 0
    fresh = capsys.readouterr().out
    assert main(["train", *args, "--epochs", "2", "--out", str(tmp_path / "sp")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "sp"), "--epochs", "4"]) == 0
    resumed = capsys.readouterr().out

    def result(out):
        return next(line for line in out.splitlines() if line.startswith("Test accuracy"))

    assert "(last epoch 4, no validation)" in result(resumed)
    assert result(resumed).split(";")[0] == result(fresh).split(";")[0]
    assert same_weights(tmp_path / "sp", tmp_path / "fresh")
