"""`cnnkit train` end to end on small real data: the run directory, errors, resume, evaluate, predict."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import cnnkit
from _child import pause_after_epoch, wait_for_line
from cnnkit.cli import main

RUN_FILES = {"config.json", "history.csv", "metrics.json", "best", "last", "state", "curves.png",
             "confusion_matrix.png", "mistakes.png", "report.md"}
SMALL = ["--model", "seed003-cnn", "--dataset", "digits", "--batch-size", "64", "--seed", "3",
         "--quiet"]


def read_history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_train_writes_a_complete_run_directory(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "3", "--val-split", "0.2", "--out", str(run)]) == 0
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "best_epoch", "best_val_loss", "wall_time_s",
                "samples_per_s"):
        assert metrics[key] is not None, key
    assert metrics["test_accuracy"] > 0.5  # 3 epochs on digits: far above chance (0.1)
    assert metrics["test_images"] == 360 and metrics["val_images"] + metrics["train_images"] == 1437
    rows = read_history(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    best = min(range(3), key=lambda i: float(rows[i]["val_loss"]))
    assert metrics["best_epoch"] == best + 1
    report = (run / "report.md").read_text()
    assert "Test accuracy" in report and "confusion_matrix.png" in report and "curves.png" in report
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["train"]["batch_size"] == 64 and config["options"]["val_split"] == 0.2
    # the best model, reloaded, gives the reported test accuracy through `cnnkit evaluate`
    assert main(["evaluate", str(run), "--json"]) == 0


def test_evaluate_and_predict_agree_with_the_in_memory_model(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(run)]) == 0
    capsys.readouterr()
    model = cnnkit.load(run / "best")
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    from cnnkit.data import load_dataset

    image = load_dataset("digits").x_train[5].numpy()  # (8, 8, 1) uint8
    Image.fromarray(image[..., 0]).save(tmp_path / "digit.png")
    assert main(["predict", str(run), str(tmp_path / "digit.png"), "--json", "--top-k", "2",
                 "--plot", str(tmp_path / "bars.png")]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    probs = model.predict(image)
    assert result["top"][0]["index"] == int(probs.argmax())
    assert result["top"][0]["probability"] == pytest.approx(float(probs.max()), rel=1e-5)
    assert (tmp_path / "bars.png").stat().st_size > 1000


@pytest.mark.parametrize("extra,message", [
    (["--epochs", "-1"], "--epochs -1 is out of range"),
    (["--batch-size", "0"], "--batch-size 0 is out of range"),
    (["--val-split", "1.0"], "--val-split 1.0 is out of range; valid: 0 <= --val-split < 1"),
    (["--val-split", "-0.1"], "--val-split -0.1"),
    (["--fill-mode", "bogus"], "unknown --fill-mode 'bogus'"),
    (["--rotation-range", "-5"], "--rotation-range must be a number >= 0"),
    (["--limit", "3"], "--limit 3 is out of range"),
    (["--artifacts", "some"], "unknown artifacts 'some'"),
    (["--freeze"], "--freeze needs --init-from"),
    (["--loss", "binary_crossentropy"], "binary_crossentropy"),
    (["--optimizer", "adma"], "unknown optimizer 'adma'"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--dataset", "nope"], "nope"),
    (["--recipe", "seed999"], "unknown recipe 'seed999'"),
    (["--ema", "1.5"], "--ema 1.5 is out of range; valid: 0 < --ema < 1"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "1", *extra, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not run.exists()


def test_model_that_does_not_fit_the_data(tmp_path, capsys):
    model_file = tmp_path / "m.yaml"
    model_file.write_text("input_shape: [28, 28, 1]\nlayers:\n  - Flatten: {}\n  - Dense: {units: 10}\n")
    assert main(["train", "--model", str(model_file), "--dataset", "digits", "--out",
                 str(tmp_path / "run")]) == 2
    assert "does not fit the data's images (8, 8, 1)" in capsys.readouterr().err


def test_existing_run_is_never_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(run)]) == 0
    before = (run / "metrics.json").read_bytes()
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "metrics.json").read_bytes() == before


PAUSE_AFTER_EPOCH_2 = pause_after_epoch(2)  # holds still once epoch 2's state is written


def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path):
    args = [*SMALL, "--epochs", "5", "--val-split", "0.2"]
    full = tmp_path / "full"
    assert main(["train", *args, "--out", str(full)]) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", PAUSE_AFTER_EPOCH_2, "train", *args, "--out",
                             str(killed)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    interrupted = wait_for_line(proc, "saved epoch 2")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert interrupted, "the run finished before it could be killed"
    assert not (killed / "metrics.json").exists()
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0

    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_history(killed)) == strip(read_history(full))
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, killed))
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]


def test_same_seed_same_numbers(tmp_path):
    for name in ("a", "b"):
        assert main(["train", *SMALL, "--epochs", "2", "--out", str(tmp_path / name)]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_history(tmp_path / "a")) == strip(read_history(tmp_path / "b"))


def test_dry_run_recipes_on_small_fixture(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    y = np.arange(120) % 10
    np.savez(tmp_path / "small.npz", x_train=x, y_train=y)
    for recipe in ("seed000", "seed002", "seed003", "seed004"):
        run = tmp_path / recipe
        assert main(["train", "--recipe", recipe, "--dataset", f"npz:{tmp_path / 'small.npz'}",
                     "--dry-run", "--epochs", "2", "--quiet", "--out", str(run)]) == 0, recipe
        assert (run / "report.md").is_file()


def test_transfer_learning_new_head_and_freeze(tmp_path):
    import torch

    source = tmp_path / "source"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(source)]) == 0
    x = np.random.default_rng(1).integers(0, 256, (90, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "three.npz", x_train=x, y_train=np.arange(90) % 3)
    run = tmp_path / "transfer"
    assert main(["train", "--model", "seed003-cnn", "--dataset", f"npz:{tmp_path / 'three.npz'}",
                 "--init-from", str(source / "best"), "--freeze", "--epochs", "1", "--quiet",
                 "--out", str(run)]) == 0
    before, after = cnnkit.load(source / "best"), cnnkit.load(run / "best")
    assert after.output_shape == (3,)
    conv_before = before.layer_module("conv2d").conv.weight
    assert torch.equal(conv_before, after.layer_module("conv2d").conv.weight)  # frozen: unchanged
    # the run holds what its resume needs: the source may go, and what --freeze fixed stays so
    shutil.rmtree(source)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    resumed = cnnkit.load(run / "last")
    assert torch.equal(conv_before, resumed.layer_module("conv2d").conv.weight)
    assert not torch.equal(after.layer_module("dense").linear.weight,
                           resumed.layer_module("dense").linear.weight)  # the head trained on


def test_test_time_flip_is_saved_and_evaluate_reproduces_it(tmp_path, capsys):
    """--test-time-flip: the run's test accuracy, `cnnkit evaluate` and model.predict all use
    the average of each image and its mirror image, because the saved model says so."""
    import torch

    run = tmp_path / "run"
    assert main(["train", "--model", "fast-cnn", "--dataset", "digits", "--batch-size", "64",
                 "--seed", "3", "--quiet", "--epochs", "2", "--horizontal-flip",
                 "--test-time-flip", "--out", str(run)]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["train"]["test_time_flip"] is True
    assert "test-time flips" in (run / "report.md").read_text()
    model = cnnkit.load(run / "best")
    assert model.test_time_flip and json.loads((run / "best" / "model.json").read_text())[
        "config"]["test_time_flip"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    # and it is the mirror average, not the plain prediction
    from cnnkit.data import load_dataset
    x = load_dataset("digits").x_train[:50]
    net = model.net.eval()
    xf = x.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        net.flip_average = False  # the plain network, to build the mirror average by hand
        want = torch.softmax((net(xf) + net(xf.flip(3))) / 2, 1)
        net.flip_average = True
    assert np.allclose(model.predict(x.numpy()), want.numpy(), atol=1e-5)
    model.test_time_flip = False
    assert not np.allclose(model.predict(x.numpy()), want.numpy(), atol=1e-5)


def test_weight_averaging_is_the_saved_model_and_the_reported_score(tmp_path, capsys):
    """--ema: the run reports it, and the model it saves is the average that scored the test
    accuracy (`cnnkit evaluate` of the saved model gives the same number)."""
    run, plain = tmp_path / "run", tmp_path / "plain"
    common = ["--model", "fast-cnn", "--dataset", "digits", "--batch-size", "64", "--seed", "3",
              "--quiet", "--epochs", "2"]
    assert main(["train", *common, "--ema", "0.99", "--out", str(run)]) == 0
    assert main(["train", *common, "--out", str(plain)]) == 0
    capsys.readouterr()
    assert json.loads((run / "config.json").read_text())["options"]["train"]["ema"] == 0.99
    assert "weights averaged (EMA, decay 0.99)" in (run / "report.md").read_text()
    assert "EMA" not in (plain / "report.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    a, b = cnnkit.load(run / "last"), cnnkit.load(plain / "last")
    assert any(not np.array_equal(x.detach().numpy(), y.detach().numpy())
               for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))


def test_standardized_model_is_evaluated_and_predicted_as_it_was_trained(tmp_path, capsys):
    """--normalize standardize: the training set's mean and std are saved with the model, so
    `cnnkit evaluate` and `model.predict` scale images exactly as training did."""
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--normalize", "standardize",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    pre = json.loads((run / "best" / "model.json").read_text())["preprocessing"]
    assert pre["normalize"] == "standardize" and 0.2 < pre["mean"][0] < 0.4 and pre["std"][0] > 0.2
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-9)
    import torch

    from cnnkit.data import load_dataset
    x = load_dataset("digits").x_train[:200]
    model = cnnkit.load(run / "best")
    xs = (x.permute(0, 3, 1, 2).float() / 255 - pre["mean"][0]) / pre["std"][0]
    with torch.no_grad():
        want = torch.softmax(model.net.eval()(xs), 1).numpy()
    probs = model.predict(x.numpy())
    assert np.allclose(probs, want, atol=1e-5)
    assert np.allclose(model.predict(x.numpy().astype(np.float32) / 255), want, atol=1e-5)
    unit = (x.permute(0, 3, 1, 2).float() / 255)  # what predict did before: a different answer
    with torch.no_grad():
        assert not np.allclose(torch.softmax(model.net(unit), 1).numpy(), want, atol=1e-3)
