"""`cnnkit calibrate RUN`: a temperature fitted on the validation split (or a tenth of the
training split), stored in best/model.json and applied by predict, evaluate, serve and ONNX."""
import json
import re

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.look.metrics import calibration
from cnnkit.model.predict import predict_proba
from cnnkit.model.sequential import check_temperature
from cnnkit.runs.calibrate import fit_temperature
from cnnkit.runs.evaluate import evaluate


def digits_run(out, **more):
    cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=6, batch_size=64,
                              seed=1, verbose=0, out=str(out), **more))
    return out


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A digits run with a validation split: its best model's test probabilities before
    `cnnkit calibrate`, and what the command printed."""
    run = digits_run(tmp_path_factory.mktemp("runs") / "digits", val_split=0.2)
    before = evaluate(run)
    return run, before


def test_the_fit_finds_the_temperature_the_labels_were_drawn_at():
    # labels drawn from softmax(z / 2): the likeliest temperature for logits z is 2
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 5, generator=gen) * 4
    y = torch.multinomial(torch.softmax(z / 2, dim=1), 1, generator=gen).flatten()
    assert fit_temperature(z, y) == pytest.approx(2.0, rel=0.05)
    assert fit_temperature(z / 2, y) == pytest.approx(1.0, rel=0.05)


def test_calibrate_prints_the_fit_and_the_errors_before_and_after(calibrated, capsys):
    run, before = calibrated
    assert main(["calibrate", str(run)]) == 0
    out = capsys.readouterr().out
    t = json.loads((run / "best" / "model.json").read_text())["config"]["temperature"]
    after = evaluate(run)  # best/ now holds the temperature

    assert f"Temperature {t:.4f}, fitted on the validation split: 288 images" in out
    assert (f"expected calibration error {before.report['ece']:.4f} -> "
            f"{after.report['ece']:.4f}") in out
    assert after.report["ece"] < before.report["ece"]
    # the run's own figures say which model they describe
    assert "report.md and report.html show the figures before calibration" in out
    record = json.loads((run / "metrics.json").read_text())["calibration"]
    assert record["temperature"] == t and record["ece_after"] == pytest.approx(after.report["ece"])
    # no prediction's class changes, on the whole test split; only the confidences
    assert np.array_equal(after.probs.argmax(axis=1), before.probs.argmax(axis=1))
    assert after.report["accuracy"] == before.report["accuracy"]
    expected = torch.softmax(torch.log(torch.as_tensor(before.probs, dtype=torch.float64)) / t, 1)
    assert np.allclose(after.probs, expected.numpy(), atol=1e-5)
    # predict of the saved model agrees with evaluate
    model = cnnkit.load(run / "best")
    assert model.temperature == t
    from cnnkit.keras.models import load_model  # the same model through cnnkit.keras

    keras_model = load_model(str(run / "best"))
    assert keras_model.temperature == t
    assert np.allclose(predict_proba(keras_model, after.x[:50]), after.probs[:50], atol=1e-6)
    assert np.allclose(predict_proba(model, after.x[:50]), after.probs[:50], atol=1e-6)


def test_the_onnx_graph_applies_the_temperature_and_passes_its_parity_check(calibrated, tmp_path):
    from cnnkit.serve.onnx import export_onnx

    run, _ = calibrated
    if "temperature" not in json.loads((run / "best" / "model.json").read_text())["config"]:
        assert main(["calibrate", str(run)]) == 0  # this test alone
    export_onnx(run, tmp_path / "m.onnx")  # raises if onnxruntime and torch disagree
    ev = evaluate(run, runtime="torch")
    onnx_probs = cnnkit.Predictor(str(tmp_path / "m.onnx")).predict(ev.x)
    assert np.allclose(onnx_probs, ev.probs, atol=1e-5)
    assert calibration(onnx_probs, ev.y.numpy())["ece"] == pytest.approx(ev.report["ece"], abs=1e-4)
    # what `cnnkit serve` predicts with: a Predictor of the run's model, on either runtime
    for runtime in ("torch", "onnx"):
        served = cnnkit.Predictor(str(run), runtime=runtime).predict(ev.x[:20])
        assert np.allclose(served, ev.probs[:20], atol=1e-5)


def test_a_run_without_validation_is_fitted_on_a_tenth_of_its_training_split(tmp_path, capsys):
    run = digits_run(tmp_path / "noval")
    assert main(["calibrate", str(run)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"fitted on 10% of the training split \(the run kept no validation split; "
                     r"the model trained on these images\): 143 images", out)


def test_what_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [0, -1.5, float("inf"), "2", True])
def test_a_bad_temperature_in_a_model_description_is_one_line(bad):
    with pytest.raises(CnnkitError, match=r"temperature must be a finite number > 0; got"):
        check_temperature(bad)
