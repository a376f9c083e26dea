"""`cnnkit export` / `cnnkit.export_onnx`: every preset exports and matches PyTorch on real
onnxruntime, the file carries what an onnxruntime-only user needs, and every bad request is
one line, exit 2, with nothing written."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.model.predict import predict_proba
from cnnkit.model.presets import PRESETS, create_model
from cnnkit.serve.onnx import FORMAT, export_onnx
from cnnkit.serve.parity import verify_onnx


def with_batch_norm_statistics(model, seed=0):
    """Running statistics and affine weights far from their initial 0/1, so a graph that used
    batch statistics (training mode) or skipped a BatchNorm could not match."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def digits_model(normalize="standardize"):
    """A saved-model-like Sequential for sklearn's digits (8×8 gray, 10 classes)."""
    torch.manual_seed(0)
    model = with_batch_norm_statistics(create_model("best-cnn", input_shape=(8, 8, 1)))
    model.class_names = [f"digit {i}" for i in range(10)]
    model.dataset = "digits"
    if normalize == "standardize":
        model.preprocessing = {"normalize": "standardize", "mean": [0.3], "std": [0.45]}
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "digits-model"
    digits_model().save(path)
    return path


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_onnx(saved, out, dataset="digits")


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# -- every preset ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_exports_with_parity(name, tmp_path, preset_model):
    torch.manual_seed(0)
    model = with_batch_norm_statistics(preset_model(name))
    model.test_time_flip = True
    report = export_onnx(model, tmp_path / f"{name}.onnx")
    assert report.max_abs_diff <= 1e-5, report.text()
    assert report.top1_agree + report.ties == report.checked == 1003  # 1,000 random + 3 edges
    assert set(report.edges) == {"all-black", "all-white", "noise"}
    assert files_in(tmp_path) == [f"{name}.onnx"]  # no temporary left beside it
    p = cnnkit.Predictor(tmp_path / f"{name}.onnx")
    h, w, c = model.input_shape
    x = torch.randint(0, 256, (5, h, w, c), dtype=torch.uint8)
    np.testing.assert_allclose(p.predict(x), predict_proba(model, x), atol=1e-5)


def test_the_flip_and_batch_norm_are_in_the_graph(tmp_path):
    torch.manual_seed(1)
    model = with_batch_norm_statistics(create_model("best-cnn"))
    x = torch.randint(0, 256, (20, 28, 28, 1), dtype=torch.uint8)
    plain = predict_proba(model, x)
    model.test_time_flip = True
    flipped = predict_proba(model, x)
    assert np.abs(plain - flipped).max() > 1e-3  # the flip changes the answer...
    export_onnx(model, tmp_path / "m.onnx", check=False)
    got = cnnkit.Predictor(tmp_path / "m.onnx").predict(x)
    np.testing.assert_allclose(got, flipped, atol=1e-6)  # ...and the graph has it


def test_dynamo_exporter_matches_too(tmp_path):
    torch.manual_seed(2)
    model = with_batch_norm_statistics(create_model("best-cnn"))
    model.test_time_flip = True
    report = export_onnx(model, tmp_path / "d.onnx", exporter="dynamo")
    assert report.exporter == "dynamo" and report.opset == 18
    assert report.max_abs_diff <= 1e-5 and report.top1_agree + report.ties == report.checked


def test_fashion_mnist_full_test_split(tmp_path):
    torch.manual_seed(3)
    model = create_model("fast-cnn")
    report = export_onnx(model, tmp_path / "f.onnx", dataset="fashion-mnist")
    assert report.images == "fashion-mnist test (10,000 images)"
    assert report.checked == 10_003 and report.max_abs_diff <= 1e-5
    meta = cnnkit.Predictor(tmp_path / "f.onnx")
    assert meta.class_names[0] == "T-shirt/top"  # the dataset's names for an unnamed model


# -- the file, read with onnxruntime alone ----------------------------------------------------------
ONNXRUNTIME_ONLY = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime as ort
    sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    h, w, c = json.loads(meta["input_shape"])
    pixels = np.load(sys.argv[2])
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (h, w, c)
    probs = sess.run(None, {sess.get_inputs()[0].name: pixels})[0]
    names = json.loads(meta["class_names"])
    print(json.dumps({"probs": probs.tolist(), "top": [names[i] for i in probs.argmax(1)],
                      "meta": dict(meta),
                      "foreign": sorted(m for m in sys.modules if m.split(".")[0] in
                                        ("cnnkit", "torch", "onnx"))}))
""")


def test_onnxruntime_alone_gives_the_same_probabilities(saved, exported, tmp_path):
    model = cnnkit.load(saved)
    pixels = cnnkit.data.load_dataset("digits").x_train[:64].numpy()  # uint8 (64, 8, 8, 1)
    np.save(tmp_path / "pixels.npy", pixels)
    script = tmp_path / "only_ort.py"
    script.write_text(ONNXRUNTIME_ONLY)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", str(script), str(exported.path),
                           str(tmp_path / "pixels.npy")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["foreign"] == []  # no cnnkit, torch or onnx code ran
    want = predict_proba(model, pixels)
    np.testing.assert_allclose(np.array(out["probs"]), want, atol=1e-6)
    assert out["top"] == [model.class_names[i] for i in want.argmax(1)]
    meta = out["meta"]
    assert meta["format"] == FORMAT and meta["cnnkit_version"] == cnnkit.__version__
    assert json.loads(meta["class_names"]) == model.class_names
    assert json.loads(meta["input_shape"]) == [8, 8, 1]
    assert json.loads(meta["preprocessing"]) == model.preprocessing  # standardize, mean, std
    assert json.loads(meta["dataset"]) == "digits" and meta["batch"] == "dynamic"
    assert "uint8" in meta["input"] and meta["summary"].startswith('Model: "best-cnn"')


def test_report_compares_on_the_models_test_split(exported):
    r = exported
    assert r.images == "digits (1,797 images; it has no test split)"
    assert r.checked == 1797 + 3 and r.max_abs_diff <= 1e-5
    assert r.top1_agreement == 1.0
    text = r.text()
    assert "max |Δ probability|" in text and "top-1 agreement 1,800 of 1,800" in text


def test_batch_one_and_dynamic_give_the_same_probabilities(saved, exported, tmp_path):
    one = export_onnx(saved, tmp_path / "one.onnx", batch="1", dataset="digits")
    assert one.batch == "1"
    import onnxruntime as ort

    fixed = ort.InferenceSession(str(one.path), providers=["CPUExecutionProvider"])
    assert fixed.get_inputs()[0].shape == [1, 8, 8, 1]
    dynamic = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    assert dynamic.get_inputs()[0].shape[1:] == [8, 8, 1]
    assert isinstance(dynamic.get_inputs()[0].shape[0], str)  # a named, free dimension
    x = cnnkit.data.load_dataset("digits").x_train[:10]
    a = cnnkit.Predictor(one.path).predict(x)  # ten calls of one image
    b = cnnkit.Predictor(exported.path).predict(x)  # one call of ten
    np.testing.assert_allclose(a, b, atol=1e-6)


# -- the command ------------------------------------------------------------------------------------
def test_cli_export_prints_the_report(saved, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(saved), "--format", "onnx", "--out", str(out), "--opset", "13",
                 "--dataset", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["opset"] == 13 and report["checked"] == 1800 and out.is_file()
    assert report["max_abs_diff"] <= 1e-5 and report["top1_agreement"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "unknown format 'tflite'; valid: onnx"),
    (["--opset", "9"], "--opset 9 is out of range; valid: an integer 10..20"),
    (["--opset", "x"], "--opset x is out of range"),
    (["--exporter", "dynamo", "--opset", "17"], "--opset 17 is out of range; valid: an integer 18..23"),
    (["--batch", "8"], "unknown batch '8'; valid: dynamic, 1"),
    (["--tolerance", "-1"], "--tolerance -1"),
    (["--threads", "0"], "--threads: invalid value '0'; valid: an integer >= 1 or auto"),
])
def test_bad_options_are_one_line_and_write_nothing(args, message, saved, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    try:  # a value argparse's own type check refuses exits from the parser, with status 2
        code = main(["export", str(saved), "--out", str(out), *args])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert files_in(tmp_path) == []


def test_bad_paths_are_one_line_and_write_nothing(saved, tmp_path, capsys):
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.txt").write_text("not a model")
    before = files_in(tmp_path)
    cases = [([str(saved), "--out", str(tmp_path / "folder.onnx")], "is a folder"),
             ([str(saved), "--out", str(tmp_path)], "is a folder"),
             ([str(saved), "--out", str(tmp_path / "m.txt")], "does not end in .onnx"),
             ([str(saved), "--out", str(tmp_path / "afile" / "m.onnx")], "afile: is a file, not a folder"),
             ([str(saved)], "--out is required"),
             ([str(tmp_path / "notes.txt"), "--out", str(tmp_path / "m.onnx")], "unknown model"),
             (["no-such-preset", "--out", str(tmp_path / "m.onnx")], "unknown model 'no-such-preset'")]
    for args, message in cases:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cnnkit: error: ") and err.count("\n") == 1 and message in err, err
    assert files_in(tmp_path) == before
    assert files_in(tmp_path / "folder.onnx") == []


def test_parity_failure_is_one_line_and_writes_nothing(saved, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(saved), "--out", str(out), "--dataset", "digits",
                 "--tolerance", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime does not match PyTorch: max |Δp|" in err
    assert "(tolerance 0)" in err and "nothing written" in err
    assert files_in(tmp_path) == []


def test_a_tampered_file_fails_the_check(saved, exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(exported.path))
    dense = max(proto.graph.initializer, key=lambda t: "dense" in t.name and "bias" in t.name)
    bias = numpy_helper.to_array(dense).copy()
    bias[3] += 5.0  # class 3 wins far more often
    dense.CopyFrom(numpy_helper.from_array(bias, dense.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(proto, str(tampered))
    assert verify_onnx(saved, exported.path).max_abs_diff <= 1e-5  # the original passes
    with pytest.raises(CnnkitError) as e:
        verify_onnx(saved, tampered)
    message = str(e.value)
    assert "\n" not in message and "onnxruntime does not match PyTorch" in message
    assert "top-1 disagreement" in message


def test_an_onnx_file_is_not_exported_again(exported, tmp_path):
    with pytest.raises(CnnkitError, match="is an ONNX file already"):
        export_onnx(exported.path, tmp_path / "again.onnx")
