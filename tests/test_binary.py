"""Binary classifiers end to end (the output contract, cnnkit.model.outputs): a model ending in
Dense(1, sigmoid) trained with binary_crossentropy, and a 2-unit softmax model, on scikit-learn's
digits 3 vs 8 through `cnnkit train`, `cnnkit evaluate`, `cnnkit predict` and model.predict."""
import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data import load_dataset

CLASSES = (3, 8)  # a pair the digits mix up more than 0 vs 1: accuracy has room to mean something
HEADS = {  # last layer, loss
    "sigmoid": ("Dense: {units: 1, activation: sigmoid}", "binary_crossentropy"),
    "softmax": ("Dense: {units: 2, activation: softmax}", "sparse_categorical_crossentropy"),
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """npz of the digits 3 and 8 as classes 0 and 1 (every 5th image held out as test)."""
    ds = load_dataset("digits")
    keep = np.isin(ds.y_train.numpy(), CLASSES)
    x, y = ds.x_train.numpy()[keep], (ds.y_train.numpy()[keep] == CLASSES[1]).astype(np.int64)
    test = np.arange(len(y)) % 5 == 0
    path = tmp_path_factory.mktemp("binary") / "digits38.npz"
    np.savez(path, x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
             class_names=np.array([str(c) for c in CLASSES]))
    return {"npz": path, "x_train": x[~test], "y_train": y[~test], "y_test": y[test]}


@pytest.fixture(scope="module", params=list(HEADS))
def run(request, digits, tmp_path_factory):
    last, loss = HEADS[request.param]
    root = tmp_path_factory.mktemp(f"run-{request.param}")
    model_file = root / "model.yaml"
    model_file.write_text("input_shape: [8, 8, 1]\nlayers:\n"
                          "  - Conv2D: {filters: 16, kernel_size: 3, activation: relu}\n"
                          "  - Flatten: {}\n"
                          f"  - {last}\n")
    with pytest.MonkeyPatch.context() as mp:  # the module scope outlives the per-test cache
        mp.setenv("CNNKIT_DATA", str(root / "cache"))
        assert main(["train", "--model", str(model_file), "--dataset", f"npz:{digits['npz']}",
                     "--loss", loss, "--epochs", "3", "--batch-size", "32", "--seed", "1",
                     "--quiet", "--out", str(root / "run")]) == 0
    return request.param, root / "run"


def class_means(digits) -> list[np.ndarray]:
    """The average training image of each class (8, 8, 1) uint8: a clear example of it."""
    x, y = digits["x_train"], digits["y_train"]
    return [np.rint(x[y == k].mean(axis=0)).astype(np.uint8) for k in (0, 1)]


def independent_probabilities(head, model, image) -> np.ndarray:
    """P(class 0), P(class 1) straight from the network's logits, with plain math."""
    net = model.net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(image)[None].permute(0, 3, 1, 2).float() / 255)[0]
    if head == "sigmoid":
        p = 1 / (1 + math.exp(-float(logits[0])))
        return np.array([1 - p, p])
    e = np.exp(logits.double().numpy() - float(logits.max()))
    return e / e.sum()


def test_train_writes_the_report_plots_and_metrics(run, digits):
    head, run_dir = run
    n_test = len(digits["y_test"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_images"] == n_test
    assert metrics["test_accuracy"] > 0.85  # chance is ~0.5
    assert [c["class"] for c in metrics["per_class"]] == ["3", "8"]
    report = (run_dir / "report.md").read_text()
    assert "Test accuracy" in report and "2 classes" in report
    rows = report.split("confusion matrix (rows = true class")[1].splitlines()[2:4]
    counts = [[int(v) for v in re.findall(r"\d+", row)[1:]] for row in rows]  # after the name
    assert np.array(counts).shape == (2, 2) and np.sum(counts) == n_test
    for png in ("confusion_matrix.png", "mistakes.png"):
        with Image.open(run_dir / png) as img:
            assert img.size[0] > 100 and img.size[1] > 100


def test_evaluate_reproduces_the_run(run, digits, capsys):
    head, run_dir = run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert report["class_names"] == ["3", "8"]
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == len(digits["y_test"])


def test_predict_names_each_class_with_the_models_probability(run, digits, tmp_path, capsys):
    head, run_dir = run
    model = cnnkit.load(run_dir / "best")
    images = class_means(digits)
    paths = []
    for k, image in enumerate(images):
        paths.append(tmp_path / f"class{k}.png")
        Image.fromarray(image[..., 0]).save(paths[-1])
    capsys.readouterr()
    assert main(["predict", str(run_dir), *map(str, paths), "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    for k, (image, result) in enumerate(zip(images, results)):
        want = independent_probabilities(head, model, image)
        top = result["top"][0]
        assert (top["index"], top["class"]) == (k, str(CLASSES[k]))
        assert top["probability"] == pytest.approx(want[k], abs=1e-6)
        assert result["top"][1]["probability"] == pytest.approx(want[1 - k], abs=1e-6)


def test_model_predict_gives_one_column_per_class(run, digits):
    head, run_dir = run
    model = cnnkit.load(run_dir / "best")
    x = digits["x_train"][:20]
    probs = model.predict(x)
    assert probs.shape == (20, 2)  # two columns for the 1-unit sigmoid model too
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    want = np.stack([independent_probabilities(head, model, im) for im in x])
    np.testing.assert_allclose(probs, want, atol=1e-6)
    assert model.predict(x[0]).shape == (2,)


def test_metrics_name_the_one_column_slip():
    from cnnkit.errors import CnnkitError
    from cnnkit.look.metrics import classification_report

    with pytest.raises(CnnkitError, match=r"one column per class; got \(2, 1\).*\[1 - p, p\]"):
        classification_report(np.array([[0.2], [0.9]]), np.array([0, 1]), ["3", "8"])


@pytest.mark.parametrize("logits, activation, probs, classes", [
    # one sigmoid unit: [1 - p, p], class 1 iff p > 0.5 (a logit of 1e-8 gives p == 0.5 in float32)
    ([[0.0], [2.0], [-2.0], [1e-8]], "sigmoid",
     [[0.5, 0.5], [0.119203, 0.880797], [0.880797, 0.119203], [0.5, 0.5]], [0, 1, 0, 0]),
    ([[2.0]], None, [[0.119203, 0.880797]], [1]),  # a single unit is always read as a sigmoid
    ([[1.0, 2.0, 0.0]], "softmax", [[0.244728, 0.665241, 0.090031]], [1]),
    ([[1.0, 2.0, 0.0]], None, [[0.244728, 0.665241, 0.090031]], [1]),  # plain logits: softmax
    ([[0.0, 2.0]], "sigmoid", [[0.5, 0.880797]], [1]),  # several sigmoid units: one each
    ([[30.0, 40.0]], "sigmoid", [[1.0, 1.0]], [0]),  # saturated tie: the class shown first
])
def test_output_contract(logits, activation, probs, classes):
    from cnnkit.model import outputs
    from cnnkit.train.losses import correct_count

    z = torch.tensor(logits)
    got = outputs.probabilities(z, activation)
    np.testing.assert_allclose(got.numpy(), probs, atol=1e-6)
    assert outputs.predicted_class(z, activation).tolist() == classes
    assert got.argmax(dim=1).tolist() == classes  # the class is the most probable one
    assert correct_count(z, torch.tensor(classes), activation) == len(classes)  # training's too
    assert outputs.class_count(z.shape[1]) == got.shape[1]


def test_a_head_that_does_not_fit_the_classes_names_the_fix():
    from cnnkit.errors import CnnkitError
    from cnnkit.model.outputs import check_classes

    check_classes(1, 2, "digits38")
    with pytest.raises(CnnkitError, match=r"has 1 output but digits has 10 classes; valid: a "
                                          r"last layer Dense\(10\)"):
        check_classes(1, 10, "digits")
    with pytest.raises(CnnkitError, match=r"Dense\(1, activation='sigmoid'\) or Dense\(2\)"):
        check_classes(3, 2, "pairs")
