"""--image-size and --channels on train, cv and tune; the console's data line; unreadable files
skipped by a run and by predict; `cnnkit train --dataset X` alone."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data import convert_images, load_dataset
from cnnkit.errors import CnnkitError
from cnnkit.runs.spec import RunSpec

TINY = ["--model", "fast-cnn-dense", "--dataset", "digits", "--epochs", "1", "--batch-size", "64",
        "--seed", "0"]


@pytest.mark.parametrize("given,size", [("160", (160, 160)), ("12x8", (12, 8)), (" 7X9 ", (7, 9)),
                                        (16, (16, 16)), ([10, 12], (10, 12))])
def test_image_size_is_read_as_a_user_writes_it(given, size):
    spec = RunSpec(model="fast-cnn-dense", dataset="digits", image_size=given, channels=3)
    resolved = spec.resolved()
    assert resolved.image_size == size and resolved.channels == 3
    # config.json's form (a JSON list) comes back as the same tuple
    again = RunSpec.from_dict(json.loads(json.dumps(resolved.to_options()))).resolved()
    assert again.image_size == size


@pytest.mark.parametrize("flags,message", [
    (["--image-size", "0x5"], "invalid --image-size '0x5'; height and width must be at least 1"),
    (["--image-size", "abc"], "invalid --image-size 'abc'; valid: HxW"),
    (["--image-size", "3x4x5"], "invalid --image-size '3x4x5'"),
    (["--channels", "2"], "unknown --channels 2; valid: 1 (grayscale), 3 (RGB)"),
    (["--channels", "two"], "--channels: invalid int value: 'two'"),
])
@pytest.mark.parametrize("command", ["train", "cv"])
def test_bad_image_flags_are_one_line_exit_2_nothing_written(tmp_path, capsys, flags, message,
                                                             command):
    out = tmp_path / "run"
    argv = [command, "--dataset", "digits", *flags, "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusal of a type: the same one line, exit 2
        code = e.code
    assert code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.out == ""  # not even the fast recipe's note
    assert not out.exists()


def test_library_refuses_the_same_values():
    with pytest.raises(CnnkitError, match="invalid image_size"):
        RunSpec(model="fast-cnn-dense", dataset="digits", image_size=(1.5, 2)).resolved()
    with pytest.raises(CnnkitError, match="unknown channels True"):
        RunSpec(model="fast-cnn-dense", dataset="digits", channels=True).resolved()


def test_train_at_a_chosen_size_records_it_and_predict_converts_the_same_way(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--image-size", "12x10", "--channels", "3",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1,437 train / 0 validation / 360 test images at 12×10×3" in out
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["image_size"] == [12, 10] and config["options"]["channels"] == 3
    assert config["resolved"]["dataset"]["image_shape"] == [12, 10, 3]
    model = cnnkit.load(run / "best")
    assert tuple(model.input_shape) == (12, 10, 3)

    # the run's images: digits converted once (bilinear, gray repeated), mapped from the cache
    native = load_dataset("digits")
    converted = load_dataset("digits", channels=3, size=(12, 10))
    assert torch.equal(converted.x_train, convert_images(native.x_train, 3, (12, 10)))
    assert converted.x_train.shape == (1797, 12, 10, 3)
    assert converted.info["cache"] == load_dataset("digits", channels=3, size=(12, 10)).info["cache"]

    # an 8x8 gray PNG handed to predict is, pixel for pixel, the image the run trained on
    Image.fromarray(native.x_train[7, :, :, 0].numpy()).save(tmp_path / "seven.png")
    assert main(["predict", str(run), str(tmp_path / "seven.png"), "--json", "--top-k", "1",
                 "--runtime", "torch"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    probs = model.predict(converted.x_train[7:8].numpy())[0]
    assert top["index"] == int(probs.argmax())
    assert top["probability"] == pytest.approx(float(probs.max()), abs=1e-6)

    # evaluate scores the run's own 12x10x3 test split; the ONNX export (its parity checked on
    # that split) converts the PNG the same way
    assert main(["evaluate", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m.onnx"), str(tmp_path / "seven.png"), "--json",
                 "--top-k", "1"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    assert top["index"] == int(probs.argmax())
    assert top["probability"] == pytest.approx(float(probs.max()), abs=1e-4)


def test_npz_and_folder_sources_take_the_size_too(tmp_path, capsys):
    digits = load_dataset("digits")
    x, y = digits.x_train[:300].numpy(), digits.y_train[:300].numpy()
    np.savez(tmp_path / "d.npz", x_train=x[..., 0], y_train=y)
    for k in range(3):  # a folder of 3 classes, 20 gray 8x8 images each
        (tmp_path / "f" / str(k)).mkdir(parents=True)
        for i in np.flatnonzero(y == k)[:20]:
            Image.fromarray(x[i, :, :, 0]).save(tmp_path / "f" / str(k) / f"{i}.png")
    for source, n in (("npz:" + str(tmp_path / "d.npz"), 300), ("folder:" + str(tmp_path / "f"), 60)):
        run = tmp_path / source[:3]
        assert main(["train", "--model", "fast-cnn-dense", "--dataset", source, "--epochs", "1",
                     "--image-size", "16", "--channels", "3", "--seed", "0", "--out", str(run)]) == 0
        assert "at 16×16×3" in capsys.readouterr().out
        assert tuple(cnnkit.load(run / "best").input_shape) == (16, 16, 3)


def test_a_run_names_unreadable_files_and_lists_them_all(tmp_path, capsys):
    digits = load_dataset("digits")
    for k in range(2):
        (tmp_path / "f" / f"c{k}").mkdir(parents=True)
        for i in np.flatnonzero(digits.y_train.numpy() == k)[:15]:
            Image.fromarray(digits.x_train[i, :, :, 0].numpy()).save(tmp_path / "f" / f"c{k}" / f"{i}.png")
    bad = [f"c0/broken{i}.png" for i in range(7)] + ["c1/notes.txt"]
    for name in bad:
        (tmp_path / "f" / name).write_bytes(b"not an image")
    run = tmp_path / "run"
    assert main(["train", "--model", "fast-cnn-dense", "--dataset", f"folder:{tmp_path / 'f'}",
                 "--epochs", "1", "--seed", "0", "--out", str(run)]) == 0
    captured = capsys.readouterr()
    assert f"24 train / 0 validation / 6 test images; 8 unreadable files skipped (all in " \
           f"{run / 'skipped.txt'})" in captured.out
    # the console names the first few, the run directory all of them
    assert "skipped 8 unreadable files: c0/broken0.png, c0/broken1.png" in captured.err
    assert "(3 more)" in captured.err
    assert (run / "skipped.txt").read_text().split() == sorted(bad)
    assert main(["data", "show", f"folder:{tmp_path / 'f'}"]) == 0  # names them too
    assert "skipped 8 unreadable files: c0/broken0.png" in capsys.readouterr().out

    # predict skips the same files, says so, and answers for the rest
    assert main(["predict", str(run), str(tmp_path / "f"), "--json", "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 30
    assert "cnnkit: warning: skipped 7 unreadable files:" in captured.err  # .txt is not an image
    assert "broken0.png" in captured.err

    # nothing readable is an error, one line
    assert main(["predict", str(run), str(tmp_path / "f" / "c0" / "broken0.png")]) == 2
    err = capsys.readouterr().err
    assert "broken0.png" in err and err.count("\n") == 1


def test_dataset_alone_trains_the_fast_recipe_and_says_so_first(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--seed", "0",
                 "--out", str(run)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("No --model or --recipe given: training the fast recipe (its model "
                     "fast-cnn-dense, as --recipe fast) on digits")
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["recipe"] == "fast" and options["model"] == "fast-cnn-dense"
    assert options["dataset"] == "digits" and options["train"]["epochs"] == 1  # flags still win
    # a model given: no recipe, no note
    assert main(["train", *TINY, "--out", str(tmp_path / "own")]) == 0
    assert "fast recipe" not in capsys.readouterr().out
    assert json.loads((tmp_path / "own" / "config.json").read_text())["options"]["recipe"] is None


def test_cv_and_tune_take_the_flags(tmp_path, capsys):
    import yaml

    cv = tmp_path / "cv"
    assert main(["cv", *TINY, "--folds", "2", "--image-size", "10", "--channels", "3",
                 "--out", str(cv)]) == 0
    for fold in ("fold-1", "fold-2"):
        options = json.loads((cv / fold / "config.json").read_text())["options"]
        assert options["image_size"] == [10, 10] and options["channels"] == 3

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "base": {"model": "fast-cnn-dense", "dataset": "digits", "epochs": 1, "val_split": 0.2},
        "space": {"layers.0.filters": {"choice": [8]}}}))  # the preset, described at 9x11x1
    study = tmp_path / "study"
    assert main(["tune", str(space), "--sampler", "grid", "--image-size", "9x11", "--channels", "1",
                 "--out", str(study), "--quiet"]) == 0
    [trial] = sorted((study / "trials").iterdir())
    options = json.loads((trial / "config.json").read_text())["options"]
    assert options["image_size"] == [9, 11] and options["channels"] == 1
    assert options["model"]["input_shape"] == [9, 11, 1]
    assert main(["tune", "--resume", str(study), "--image-size", "8"]) == 2
    assert "--image-size cannot be given with --resume" in capsys.readouterr().err


def test_limit_converts_only_the_images_the_run_uses(tmp_path, monkeypatch):
    from cnnkit.data.mapped import read_cache

    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))
    spec = RunSpec(model="fast-cnn-dense", dataset="digits", limit=100, image_size=20, channels=3,
                   epochs=1, seed=0, out=str(tmp_path / "run"))
    result = cnnkit.run(spec)
    [cache] = (tmp_path / "cache" / "converted").iterdir()
    tensors, _ = read_cache(cache)
    # the 100 picked training images and the 360 held out for testing, not all 1,797
    assert tensors["x_train"].shape == (100, 20, 20, 3) and tensors["x_test"].shape == (360, 20, 20, 3)
    assert result.metrics["train_images"] == 100 and result.metrics["test_images"] == 360
    # evaluate reads the run's data the same way: the same test split, the same score
    from cnnkit.runs.evaluate import evaluate

    assert evaluate(tmp_path / "run").report["accuracy"] == pytest.approx(
        result.metrics["test_accuracy"], abs=1e-9)
