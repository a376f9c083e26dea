"""A graph model (a residual block on digits) through every command: train from a model file,
summary, report, evaluate, predict, export with its parity check, inspect (Grad-CAM at the last
convolution), the server's /api/predict, and a tune over a graph layer's argument."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _graph_helpers import RESIDUAL_YAML
from cnnkit.cli import main


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    """(the model file, a trained run of it, a digit image file): 3 epochs on digits."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("graph")
    model_file = root / "residual.yaml"
    model_file.write_text(RESIDUAL_YAML)
    digits = load_digits()
    image = root / "digit.png"
    Image.fromarray(np.rint(digits.images[1] * (255 / 16)).astype(np.uint8)).save(image)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNKIT_DATA", str(root / "cache"))
        assert main(["train", "--model", str(model_file), "--dataset", "digits", "--epochs", "3",
                     "--lr", "0.01", "--seed", "0", "--out", str(root / "run"), "--quiet"]) == 0
    return model_file, root / "run", image


def test_summary_of_a_graph_file_prints_the_connected_to_column(graph_run, capsys):
    model_file, _, _ = graph_run
    assert main(["summary", str(model_file)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "Layer (type)" in line)
    assert "Connected to" in header
    add = out.splitlines().index(next(line for line in out.splitlines() if "add (Add)" in line))
    assert "stem[0][0]" in out.splitlines()[add] and "conv_b[0][0]" in out.splitlines()[add + 1]


def test_the_trained_graph_is_saved_as_a_graph_and_learned(graph_run):
    from cnnkit.model.files import resolve_model

    _, run, _ = graph_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    saved = json.loads((run / "best" / "model.json").read_text())
    assert saved["config"]["outputs"] == ["head"]  # the description of a graph, inputs named
    model = resolve_model(str(run / "best"))
    assert type(model).__name__ == "Functional"
    assert model.inbound[model.layer_names().index("add")] == [1, 3]


def test_report_evaluate_predict_on_a_graph_run(graph_run, capsys):
    _, run, image = graph_run
    assert main(["report", str(run)]) == 0
    # the report inlines the model's diagram: an arrow for each of the graph's 8 edges
    assert (run / "report.html").read_text().count('class="arrow"') == 8
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert main(["predict", str(run), str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: 1 ")  # digits.images[1] is a 1


def test_export_to_onnx_passes_its_parity_check(graph_run, tmp_path, capsys):
    from cnnkit.model.files import resolve_model
    from cnnkit.serve.predictor import Predictor

    _, run, image = graph_run
    onnx = tmp_path / "graph.onnx"
    assert main(["export", str(run), "--out", str(onnx)]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement 363 of 363 (100.00%)" in out  # the test split and 3 edge images
    # onnxruntime on the file gives the graph's own probabilities
    pixels = np.asarray(Image.open(image))
    on_onnx = Predictor(onnx, runtime="onnx").predict(pixels)
    assert np.allclose(on_onnx, resolve_model(str(run / "best")).predict(pixels), atol=1e-5)


def test_inspect_draws_grad_cam_at_the_last_convolution(graph_run, tmp_path, capsys):
    from cnnkit.look.inside import conv_layer_names, feature_maps, grad_cam
    from cnnkit.model.files import resolve_model

    _, run, image = graph_run
    out = tmp_path / "inside"
    assert main(["inspect", str(run), str(image), "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert {"feature_maps_stem.png", "feature_maps_conv_a.png", "feature_maps_conv_b.png",
            "filters_stem.png"} <= set(files)
    assert any(f.startswith("gradcam_class") for f in files)
    model = resolve_model(str(run / "best"))
    assert conv_layer_names(model) == ["stem", "conv_a", "conv_b"]
    pixels = np.asarray(Image.open(image))
    heat, k = grad_cam(model, pixels)  # default: conv_b, the last convolution
    assert np.array_equal(heat, grad_cam(model, pixels, k, "conv_b")[0])
    assert heat.shape == (8, 8) and heat.max() == pytest.approx(1.0)
    # feature maps of a graph are its layers' own outputs: the add is stem + conv_b, and relu
    maps = feature_maps(model, pixels, ["stem", "conv_b", "add", "relu"])
    assert np.allclose(maps["add"], maps["stem"] + maps["conv_b"], atol=1e-6)
    assert np.allclose(maps["relu"], np.maximum(maps["add"], 0), atol=1e-6)


def test_the_server_predicts_and_inspects_a_graph_run(graph_run):
    from fastapi.testclient import TestClient

    from cnnkit.serve.app import create_app
    from cnnkit.serve.predictor import Predictor

    _, run, image = graph_run
    predictor = Predictor(run, runtime="torch")
    client = TestClient(create_app(predictor))
    data = image.read_bytes()
    r = client.post("/api/predict", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    pixels = np.asarray(Image.open(image))
    assert np.allclose(r.json()["probabilities"], predictor.predict(pixels), atol=1e-6)
    inspect = client.post("/api/inspect", content=data, headers={"Content-Type": "image/png"})
    assert inspect.status_code == 200
    assert [m["layer"] for m in inspect.json()["feature_maps"]] == ["stem", "conv_a", "conv_b"]
    assert inspect.json()["grad_cam"]["layer"] == "conv_b"
