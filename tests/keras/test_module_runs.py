"""Your own nn.Module as a cnnkit run: `cnnkit.fit(module, "digits", out=...)` writes a run
directory (config.json, history.csv, metrics.json, best/ last/ weights, pictures, report.md and
report.html), is evaluated with `cnnkit.evaluate(run, module=...)`, resumes
exactly, and loading it asks for the module's class, in one line when it is not given."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError

OPTIONS = dict(epochs=2, batch_size=64, optimizer="adam", lr=3e-3, validation_split=0.2, seed=5,
               verbose=0)


class DigitsCNN(torch.nn.Module):  # seed 003's CNN, for 8×8 digits
    def __init__(self, classes: int = 10):
        super().__init__()
        self.layer1 = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                                          torch.nn.MaxPool2d(2))
        self.fc = torch.nn.Linear(4 * 4 * 16, classes)

    def forward(self, x):
        out = self.layer1(x)
        return self.fc(out.view(out.size(0), -1))


class Other(DigitsCNN):
    pass


def _fresh(cls=DigitsCNN, seed=777):
    torch.manual_seed(seed)
    return cls()


def _history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cnn"
    module = _fresh()
    model = cnnkit.fit(module, "digits", out=out, **OPTIONS)
    return out, module, model


def test_fit_with_out_writes_a_run_directory(finished):
    out, module, model = finished
    assert model.module is module  # trained in place, the best epoch's weights
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["options"]["model"] == {"module": f"{DigitsCNN.__module__}.DigitsCNN"}
    summary = cfg["resolved"]["model_summary"]
    assert summary["input_shape"] == [8, 8, 1] and summary["output_shape"] == [10]
    assert summary["total_params"] == sum(p.numel() for p in module.parameters())
    assert cfg["options"]["val_split"] == 0.2 and cfg["options"]["train"]["lr"] == 3e-3
    rows = _history(out)
    assert [r["epoch"] for r in rows] == ["1", "2"] and model.history.history["loss"] == \
        pytest.approx([float(r["loss"]) for r in rows])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == model.run.metrics["test_accuracy"] > 0.5  # chance 0.1
    assert metrics["epochs_run"] == 2 and metrics["test_images"] == 360
    for name in ("curves.png", "confusion_matrix.png", "mistakes.png", "best/weights.safetensors",
                 "last/weights.safetensors", "best/module.json", "report.md", "report.html"):
        assert (out / name).is_file(), name


def test_a_module_run_has_the_report_a_cnnkit_run_has(finished):
    out, module, model = finished
    md = (out / "report.md").read_text()
    accuracy = model.run.metrics["test_accuracy"]
    assert f"**Test accuracy {accuracy:.4f}**" in md and "![confusion matrix](confusion_matrix.png)" in md
    assert "![loss and accuracy](curves.png)" in md and "![mistakes](mistakes.png)" in md
    params = sum(p.numel() for p in module.parameters())
    assert f"Your own nn.Module {DigitsCNN.__module__}.DigitsCNN: {params:,} parameters" in md
    assert "(layer1): Sequential(" in md  # the module as torch prints it
    assert "no layer diagram" in md and "no Grad-CAM" in md  # left out, each with its reason
    page = (out / "report.html").read_text()
    assert "Sample predictions" in page and 'class="bar right"' in page  # predictions with bars
    assert "Confusion matrix" in page and "loss and accuracy per epoch" in page
    # the filters of the module's own first nn.Conv2d, and feature maps from its submodules
    assert "16 filters, 3×3" in page
    assert "layer1.0: 16 maps 8×8" in page and "layer1.2: 16 maps 4×4" in page
    assert "no Grad-CAM" in page and "no layer diagram" in page


def test_evaluate_takes_the_module_for_a_run(finished):
    out, _, model = finished
    scores = cnnkit.evaluate(out, module=DigitsCNN())  # the run's own test split
    assert scores.accuracy == model.run.metrics["test_accuracy"]
    assert len(scores.y) == 360 and scores.runtime == "torch"
    best = cnnkit.evaluate(out / "best", module=DigitsCNN(), dataset="digits", split="train")
    assert best.runtime == "torch" and 0.5 < best.accuracy <= 1
    with pytest.raises(CnnkitError, match=r"module=DigitsCNN\(\) to cnnkit.load or "
                                          r"cnnkit.evaluate"):
        cnnkit.evaluate(out)


def test_the_best_weights_load_into_the_class_and_predict_the_same(finished):
    out, _, model = finished
    x = cnnkit.data.load_dataset("digits").x_train[:50]
    loaded = cnnkit.load(out / "best", module=DigitsCNN())
    np.testing.assert_allclose(cnnkit.load(out, module=DigitsCNN()).predict(x), loaded.predict(x))
    assert loaded.class_names == model.class_names and loaded.input_shape == (8, 8, 1)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), atol=1e-6)
    scores = cnnkit.evaluate(loaded, dataset="digits", split="train", runtime="torch")
    data = cnnkit.data.load_dataset("digits")
    right = loaded.predict(data.x_train).argmax(1) == data.y_train.numpy()
    assert scores.accuracy == pytest.approx(right.mean(), abs=1e-12)
    from safetensors.torch import load_file

    plain = DigitsCNN()
    plain.load_state_dict(load_file(str(out / "last" / "weights.safetensors")))  # your own names


def test_the_predictor_takes_a_module_model_on_torch_and_says_why_not_onnx(finished):
    from cnnkit.errors import CnnkitError

    out, _, model = finished
    x = cnnkit.data.load_dataset("digits").x_train[:5]
    predictor = cnnkit.Predictor(model)  # auto: torch, the only runtime for your own module
    assert predictor.runtime == "torch"
    np.testing.assert_allclose(predictor.predict(x), model.predict(x), atol=1e-6)
    assert predictor.top_k(x[0], k=1)[0]["index"] == int(model.predict(x[:1]).argmax())
    with pytest.raises(CnnkitError, match="^runtime 'onnx' exports models cnnkit built .* not "
                                          "your own nn.Module DigitsCNN; valid: runtime 'torch'"):
        cnnkit.Predictor(model, runtime="onnx")


def test_without_the_class_each_way_in_says_so_in_one_line(finished, capsys):
    out, _, _ = finished
    with pytest.raises(CnnkitError, match=r"best holds the weights of your own nn.Module "
                       r".*DigitsCNN.*module=DigitsCNN\(\)"):
        cnnkit.load(out / "best")
    with pytest.raises(CnnkitError, match=r"cnn was trained with your own nn.Module .*DigitsCNN"):
        cnnkit.resume(out, epochs=3)
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert "DigitsCNN" in err and "module=DigitsCNN()" in err and err.count("\n") == 1
    with pytest.raises(CnnkitError, match=r"model=.*Other.* differs from what"):
        cnnkit.fit(Other(), "digits", out=out, resume=True, **{**OPTIONS, "epochs": 3})
    with pytest.raises(CnnkitError, match="not the weights of your own nn.Module"):
        cnnkit.load(out / "state", module=DigitsCNN())
    assert len(_history(out)) == 2  # nothing above touched the run


def test_resume_from_python_continues_exactly(tmp_path, finished):
    whole, _, model = finished
    part = tmp_path / "part"
    cnnkit.fit(_fresh(), "digits", out=part, **{**OPTIONS, "epochs": 1})
    # a fresh instance, other initial weights: the run's state holds the weights it continues
    resumed = cnnkit.fit(_fresh(seed=1), "digits", out=part, resume=True, **OPTIONS)
    same = ("loss", "accuracy", "val_loss", "val_accuracy")  # all but the wall time
    assert [[r[k] for k in same] for r in _history(part)] == \
        [[r[k] for k in same] for r in _history(whole)]
    for a, b in zip(resumed.module.state_dict().values(), model.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert json.loads((part / "metrics.json").read_text())["test_accuracy"] == \
        model.run.metrics["test_accuracy"]


def test_a_run_spec_takes_the_module_and_checks_its_outputs(tmp_path):
    spec = cnnkit.RunSpec(model=_fresh(), dataset="digits", epochs=1, batch_size=64, seed=1,
                          verbose=0, artifacts="metrics", out=str(tmp_path / "m"))
    result = cnnkit.run(spec)
    assert sorted(p.name for p in result.run_dir.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "history.csv", "metrics.json", "state"]
    with pytest.raises(CnnkitError, match="3 outputs.*10 classes|10 classes.*3"):
        cnnkit.run(spec.replace(model=DigitsCNN(classes=3), out=None))
    with pytest.raises(CnnkitError, match="trains on a dataset by name"):
        cnnkit.fit(DigitsCNN(), np.zeros((20, 8, 8)), out=tmp_path / "x")
