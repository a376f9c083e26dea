"""`cnnkit.Predictor` on both runtimes, and `cnnkit predict` / `cnnkit evaluate --runtime`:
onnxruntime gives PyTorch's probabilities for every kind of input, a bare .onnx file knows its
classes and shape from its metadata, and bad requests are one line."""
import json
import warnings

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit import Predictor, RunSpec
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.model.presets import create_model
from cnnkit.serve.predictor import AUTO_ONNX_MIN_IMAGES, auto_runtime, cpu_count


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of seed003-cnn on digits, standardized inputs, test-time flips: a run
    directory with metrics.json and best/."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    return cnnkit.run(RunSpec(model="seed003-cnn", dataset="digits", epochs=1, batch_size=64,
                              seed=1, verbose=0, normalize="standardize", out=str(out)))


@pytest.fixture(scope="module")
def onnx_file(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    cnnkit.export_onnx(run.run_dir, out)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three digit images as PNG files in a folder, and the uint8 pixels they hold."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    pixels = cnnkit.data.load_dataset("digits").x_train[:3].numpy()  # (3, 8, 8, 1)
    for i, p in enumerate(pixels):
        Image.fromarray(p[:, :, 0]).save(folder / f"{i}.png")
    return folder, pixels


def test_onnx_gives_torch_probabilities(run):
    torch_p, onnx_p = Predictor(run.run_dir, runtime="torch"), Predictor(run.run_dir, runtime="onnx")
    assert (torch_p.runtime, onnx_p.runtime) == ("torch", "onnx")
    x = cnnkit.data.load_dataset("digits").x_train[:50]
    a, b = torch_p.predict(x), onnx_p.predict(x)
    assert a.shape == b.shape == (50, 10) and b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    one = onnx_p.predict(x[0].numpy())
    assert one.shape == (10,)
    np.testing.assert_allclose(one, a[0], atol=1e-6)


def test_every_kind_of_input_is_the_same_image(run, images):
    from PIL import Image

    folder, pixels = images
    p = Predictor(run.run_dir, runtime="onnx")
    want = p.predict(pixels)  # uint8 (3, 8, 8, 1)
    np.testing.assert_allclose(p.predict(pixels / 255.0), want, atol=1e-6)  # floats in [0, 1]
    np.testing.assert_allclose(p.predict(torch.from_numpy(pixels)), want, atol=1e-6)
    np.testing.assert_allclose(p.predict(pixels[:, :, :, 0]), want, atol=1e-6)  # (N, H, W)
    files = [folder / f"{i}.png" for i in range(3)]
    np.testing.assert_allclose(p.predict(files), want, atol=1e-6)
    np.testing.assert_allclose(p.predict(str(files[1])), want[1], atol=1e-6)
    np.testing.assert_allclose(p.predict(Image.open(files[2])), want[2], atol=1e-6)
    big = np.kron(pixels[0, :, :, 0], np.ones((4, 4), np.uint8))  # 32×32: resized to 8×8
    assert p.predict(big).shape == (10,)


def test_top_k_is_best_first_with_names(run):
    p = Predictor(run.run_dir, runtime="onnx")
    image = cnnkit.data.load_dataset("digits").x_train[0]
    top = p.top_k(image, k=3)
    probs = p.predict(image)
    assert [t["index"] for t in top] == list(np.argsort(-probs, kind="stable")[:3])
    assert [t["class"] for t in top] == [p.class_names[t["index"]] for t in top]
    assert top[0]["probability"] == pytest.approx(float(probs.max()))
    assert set(top[0]) == {"index", "class", "probability"}
    assert len(p.top_k(image, k=50)) == 10  # past the class count: all of them
    with pytest.raises(CnnkitError, match="k=0 is out of range"):
        p.top_k(image, k=0)
    with pytest.raises(CnnkitError, match="top_k takes one image; received a batch of 2"):
        p.top_k(np.zeros((2, 8, 8), np.uint8))


def test_card_from_a_run_and_from_a_bare_onnx_file(run, onnx_file):
    a = Predictor(run.run_dir, runtime="torch").card()
    b = Predictor(onnx_file).card()
    assert a["test_accuracy"] == run.metrics["test_accuracy"] == b["test_accuracy"]
    assert a["classes"] == b["classes"] == [str(i) for i in range(10)]
    assert a["input_shape"] == b["input_shape"] == [8, 8, 1]
    assert a["summary"] == b["summary"] and a["summary"].startswith('Model: "seed003-cnn"')
    assert (a["runtime"], b["runtime"]) == ("torch", "onnx") and a["name"] == b["name"]
    bare = Predictor(onnx_file)
    assert bare.model is None and bare.run_dir is None and bare.dataset == "digits"
    assert bare.input_shape == (8, 8, 1)
    x = cnnkit.data.load_dataset("digits").x_train[:20]
    np.testing.assert_allclose(bare.predict(x), Predictor(run.run_dir, "torch").predict(x),
                               atol=1e-6)


def test_auto_and_the_thread_policy(run, onnx_file):
    assert Predictor(run.run_dir).runtime == "onnx"  # kept: measured faster (bench_infer)
    assert Predictor(onnx_file, runtime="auto").runtime == "onnx"
    assert auto_runtime("auto", 3) == "torch" and auto_runtime("auto", AUTO_ONNX_MIN_IMAGES) == "onnx"
    assert auto_runtime("torch", 10**6) == "torch"
    options = Predictor(onnx_file)._session.get_session_options()
    assert options.intra_op_num_threads == cpu_count() == len(__import__("os").sched_getaffinity(0))
    assert options.inter_op_num_threads == 1
    one = Predictor(onnx_file, threads=1)._session.get_session_options()
    assert one.intra_op_num_threads == 1


def test_nan_probabilities_are_refused_on_onnx_too():
    torch.manual_seed(0)
    model = create_model("seed000-first", input_shape=(8, 8, 1))
    with torch.no_grad():
        for prm in model.net.parameters():
            prm.fill_(3e38)  # finite weights whose products overflow float32
    x = np.full((2, 8, 8), 255, np.uint8)
    for runtime in ("torch", "onnx"):
        with pytest.raises(CnnkitError, match="probabilities for image 0 of 2 are NaN or infinite"):
            Predictor(model, runtime=runtime).predict(x)


def test_bad_requests_are_one_line(run, onnx_file, tmp_path):
    cases = [
        (lambda: Predictor(run.run_dir, runtime="tensorrt"), "unknown runtime 'tensorrt'; valid: auto, torch, onnx"),
        (lambda: Predictor(run.run_dir, threads=0), "threads=0 is out of range"),
        (lambda: Predictor(onnx_file, runtime="torch"), "runs on onnxruntime only"),
        (lambda: Predictor(tmp_path / "missing.onnx"), "does not exist"),
        (lambda: Predictor("no-such-model"), "unknown model 'no-such-model'"),
        (lambda: Predictor(onnx_file).predict(np.full((8, 8), 2.0)), "float pixels must be in [0, 1]"),
    ]
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    cases.append((lambda: Predictor(tmp_path / "junk.onnx"), "not a model onnxruntime can load"))
    for make, message in cases:
        with pytest.raises(CnnkitError) as e:
            make()
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_onnx_file_cnnkit_did_not_write_is_refused(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    path = tmp_path / "other.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, (torch.zeros(1, 8, 8),), str(path), dynamo=False)
    with pytest.raises(CnnkitError, match="not an ONNX file cnnkit exported"):
        Predictor(path)


def test_wrong_metadata_is_named(onnx_file, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_file))
    for entry in proto.metadata_props:
        if entry.key == "class_names":
            entry.value = json.dumps(["a", "b"])
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(CnnkitError, match="class_names=.* does not match the graph's output"):
        Predictor(bad)


# -- the commands ---------------------------------------------------------------------------------
def test_evaluate_on_onnx_gives_the_torch_accuracy(run, onnx_file):
    a = cnnkit.evaluate(run.run_dir, runtime="torch")
    b = cnnkit.evaluate(run.run_dir, runtime="onnx")
    assert (a.runtime, b.runtime) == ("torch", "onnx")
    assert a.accuracy == b.accuracy == run.metrics["test_accuracy"]
    assert b.report["loss"] == pytest.approx(a.report["loss"], abs=1e-6)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    c = cnnkit.evaluate(onnx_file, split="train")  # a bare file: its dataset from metadata
    d = cnnkit.evaluate(run.run_dir / "best", split="train", runtime="torch")
    assert c.runtime == "onnx" and c.dataset == "digits" and c.accuracy == d.accuracy


def test_cli_evaluate_runtime_onnx(run, onnx_file, tmp_path, capsys):
    outs = {}
    for runtime in ("torch", "onnx"):
        assert main(["evaluate", str(run.run_dir), "--runtime", runtime, "--json",
                     "--out", str(tmp_path / runtime)]) == 0
        outs[runtime] = json.loads(capsys.readouterr().out)
    assert outs["onnx"]["runtime"] == "onnx" and outs["torch"]["runtime"] == "torch"
    assert outs["onnx"]["accuracy"] == outs["torch"]["accuracy"]
    assert outs["onnx"]["confusion_matrix"] == outs["torch"]["confusion_matrix"]
    assert main(["evaluate", str(onnx_file), "--split", "train", "--out", str(tmp_path / "f")]) == 0
    assert "digits train: 1,797 images (onnx runtime)" in capsys.readouterr().out
    assert main(["evaluate", str(run.run_dir), "--runtime", "tf", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown --runtime 'tf'; valid: auto, torch, onnx" in err
    assert not (tmp_path / "g").exists()


def test_cli_predict_runtime_onnx_prints_what_torch_prints(run, onnx_file, images, capsys):
    folder, _ = images
    printed = {}
    for model, runtime in ((run.run_dir, "torch"), (run.run_dir, "onnx"), (onnx_file, "auto")):
        assert main(["predict", str(model), str(folder), "--runtime", runtime, "--json"]) == 0
        printed[runtime] = json.loads(capsys.readouterr().out)
    for a, b in zip(printed["torch"], printed["onnx"]):
        assert a["image"] == b["image"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        for ta, tb in zip(a["top"], b["top"]):
            assert ta["probability"] == pytest.approx(tb["probability"], abs=1e-6)
    assert printed["auto"] == printed["onnx"]
    assert main(["predict", str(onnx_file), str(folder), "--runtime", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs on onnxruntime only" in err
    assert main(["predict", str(run.run_dir), str(folder), "--runtime", "tf"]) == 2
    assert "unknown --runtime 'tf'" in capsys.readouterr().err
