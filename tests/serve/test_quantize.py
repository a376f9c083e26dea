"""`cnnkit export --quantize int8|fp16`: onnxruntime's own quantization, judged beside fp32 on
the whole test split, refused past --max-drop with nothing written, and run by predict and the
Predictor like any exported file."""
import json

import numpy as np
import onnx
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.serve.onnx import export_onnx, open_session, run_session


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def int8(digit_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "digits-int8.onnx"
    return out, export_onnx(digit_run.path, out, quantize="int8")


def test_int8_is_smaller_judged_on_the_whole_test_split_and_kept(int8, digit_run):
    out, report = int8
    q = report.quantized
    assert q.mode == "int8" and q.images == len(digit_run.x_test) == 297
    assert q.calibration == 512 and q.kept and q.drop <= 0.5
    assert q.quantized.bytes == out.stat().st_size < 0.5 * q.fp32.bytes
    # the figures are the files': fp32 is the run's own test accuracy, int8 its own
    run_acc = json.loads((digit_run.path / "metrics.json").read_text())["test_accuracy"]
    assert abs(q.fp32.accuracy - run_acc) < 1e-6
    session, meta = open_session(out)
    probs = run_session(session, digit_run.x_test[..., None], meta)  # (N, 28, 28, 1)
    assert (probs.argmax(1) == digit_run.y_test).mean() == pytest.approx(q.quantized.accuracy)
    assert meta["test_accuracy"] == pytest.approx(q.quantized.accuracy)
    props = {e.key: e.value for e in onnx.load(str(out)).metadata_props}
    assert props["quantized"] == "int8" and not any(k.startswith("onnx.") for k in props)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    assert q.quantized.one_image_ms > 0 and q.quantized.images_per_s > 0


def test_the_report_says_where_the_smaller_graph_is_slower(int8):
    _, report = int8
    q = report.quantized
    text = report.text()
    assert "int8 beside fp32 on 297 test images" in text and "top-1 agreement with fp32" in text
    slower = q.quantized.one_image_ms > q.fp32.one_image_ms or \
        q.quantized.images_per_s < q.fp32.images_per_s
    assert ("int8 is slower than fp32 on this CPU" in text) == slower


def test_predict_and_the_predictor_run_the_int8_file(int8, digit_run, tmp_path, capsys):
    out, report = int8
    path, pixels = digit_run.test_image(tmp_path, 3)
    session, meta = open_session(out)
    want = run_session(session, pixels[None, ..., None] if pixels.ndim == 2 else pixels[None],
                       meta)[0]
    got = cnnkit.Predictor(out).predict(pixels)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert main(["predict", str(out), str(path), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert json.dumps(answer).count(str(int(want.argmax()))) >= 1


def test_fp16_keeps_float32_at_the_edges_and_its_accuracy(digit_run, tmp_path):
    out = tmp_path / "digits-fp16.onnx"
    q = export_onnx(digit_run.path, out, quantize="fp16").quantized
    assert q.kept and abs(q.drop) < 0.5 and q.calibration == 0
    assert q.quantized.bytes < 0.6 * q.fp32.bytes
    session, meta = open_session(out)
    assert session.get_outputs()[0].type == "tensor(float)"
    assert session.get_inputs()[0].type == "tensor(uint8)"


def test_an_outlier_activation_ruins_int8_and_the_gate_refuses_it(digit_run, tmp_path, capsys):
    """One channel driven to 1e4 and then ignored: the fp32 model is unchanged, but int8's one
    scale per tensor leaves the other channels a step of ~40 and nothing of their signal."""
    model = cnnkit.load(digit_run.path)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)
             and not list(m.children())]
    with torch.no_grad():
        convs[0].bias[0] = 1e4
        convs[1].weight[:, 0] = 0
    saved = tmp_path / "outlier"
    model.save(saved)
    out = tmp_path / "out" / "outlier-int8.onnx"
    out.parent.mkdir()
    assert main(["export", str(saved), "--out", str(out), "--quantize", "int8",
                 "--dataset", f"npz:{digit_run.path.parent / 'mnist_like.npz'}"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "int8 test accuracy" in captured.err
    assert "points below fp32's" in captured.err and "nothing written" in captured.err
    assert "int8 beside fp32" in captured.out  # the figures that decided it are shown
    assert files_in(out.parent) == []


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int4"], "unknown quantize 'int4'; valid: int8, fp16"),
    (["--quantize", "int8", "--max-drop", "-1"], "--max-drop -1.0 is out of range"),
    (["--quantize", "int8", "--max-drop", "x"], "--max-drop x is out of range"),
    (["--quantize", "int8", "--calibration", "0"], "--calibration 0 is out of range"),
])
def test_bad_quantize_options_are_one_line_and_write_nothing(args, message, digit_run,
                                                             tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(digit_run.path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert files_in(tmp_path) == []
