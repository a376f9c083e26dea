"""Metrics checked against values worked out by hand, not against scikit-learn itself."""
import json
import math
import warnings

import numpy as np
import pytest

from cnnkit.errors import CnnkitError
from cnnkit.look.metrics import (EPSILON, classification_report, cross_entropy, format_report,
                             worst_mistakes)

# Three classes, six samples. Predictions (argmax): 0 0 1 1 2 2; true labels: 0 0 0 1 1 2.
#   confusion (rows = true): cat [2 1 0], dog [0 1 1], bird [0 0 1]
#   precision: cat 2/2, dog 1/2, bird 1/2     recall: cat 2/3, dog 1/2, bird 1/1
#   f1: cat 2*(1*2/3)/(1+2/3) = 0.8, dog 0.5, bird 2*(0.5*1)/1.5 = 2/3
#   macro: P (1+.5+.5)/3 = 2/3, R (2/3+1/2+1)/3 = 13/18, F1 (0.8+0.5+2/3)/3 = 59/90
#   weighted by support 3,2,1: P (3+1+.5)/6 = 0.75, R = accuracy = 4/6, F1 (2.4+1+2/3)/6 = 61/90
PROBS = np.array([
    [0.80, 0.10, 0.10],
    [0.60, 0.30, 0.10],
    [0.30, 0.60, 0.10],   # cat taken for dog, confidence 0.6
    [0.20, 0.70, 0.10],
    [0.00, 0.10, 0.90],   # dog taken for bird, confidence 0.9
    [0.25, 0.25, 0.50],
])
Y = np.array([0, 0, 0, 1, 1, 2])
NAMES = ["cat", "dog", "bird"]


@pytest.fixture
def report():
    return classification_report(PROBS, Y, NAMES)


def test_per_class_metrics_match_hand_computed(report):
    expected = {  # class: (precision, recall, f1, support)
        "cat": (1.0, 2 / 3, 0.8, 3),
        "dog": (0.5, 0.5, 0.5, 2),
        "bird": (0.5, 1.0, 2 / 3, 1),
    }
    assert [c["class"] for c in report["per_class"]] == NAMES
    for c in report["per_class"]:
        p, r, f, s = expected[c["class"]]
        assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((p, r, f))
        assert c["support"] == s


def test_averages_accuracy_and_loss_match_hand_computed(report):
    assert report["accuracy"] == pytest.approx(4 / 6)
    macro, weighted = report["macro_avg"], report["weighted_avg"]
    assert (macro["precision"], macro["recall"], macro["f1"]) == pytest.approx((2 / 3, 13 / 18, 59 / 90))
    assert (weighted["precision"], weighted["recall"], weighted["f1"]) == pytest.approx((0.75, 4 / 6, 61 / 90))
    assert macro["support"] == weighted["support"] == report["samples"] == 6
    p_true = [0.8, 0.6, 0.3, 0.7, 0.1, 0.5]
    assert report["loss"] == pytest.approx(-sum(math.log(p) for p in p_true) / 6)


def test_confusion_matrix_rows_are_true_classes(report):
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # Every sample of class 0 predicted as class 2: the count sits in row 0, column 2.
    probs = np.tile([0.1, 0.1, 0.8], (4, 1))
    cm = classification_report(probs, np.zeros(4, dtype=int))["confusion_matrix"]
    assert cm[0][2] == 4 and cm[2][0] == 0


def test_report_is_json_ready(report):
    assert json.loads(json.dumps(report))["confusion_matrix"] == report["confusion_matrix"]


def test_absent_class_gets_zeros_without_warnings():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's UndefinedMetricWarning would be noise to users
        r = classification_report(probs, np.array([0, 1]), NAMES)
    bird = r["per_class"][2]
    assert (bird["precision"], bird["recall"], bird["f1"], bird["support"]) == (0, 0, 0, 0)
    assert r["confusion_matrix"][2] == [0, 0, 0]


def test_loss_is_finite_when_true_class_has_zero_probability():
    loss = cross_entropy(np.array([[1.0, 0.0]]), np.array([1]))
    assert math.isfinite(loss)
    assert loss == pytest.approx(-math.log(EPSILON))
    # ...and a perfect prediction costs (almost) nothing rather than NaN or -0 surprises.
    assert cross_entropy(np.array([[1.0, 0.0]]), np.array([0])) == pytest.approx(0, abs=1e-6)


def test_worst_mistakes_most_confident_first():
    assert worst_mistakes(PROBS, Y) == [(4, 1, 2, 0.9), (2, 0, 1, 0.6)]
    assert worst_mistakes(PROBS, Y, k=1) == [(4, 1, 2, 0.9)]
    assert worst_mistakes(PROBS, Y, k=0) == []


def test_worst_mistakes_ties_keep_index_order_and_none_when_all_right():
    probs = np.array([[0.3, 0.7], [0.9, 0.1], [0.3, 0.7], [0.8, 0.2]])
    y = np.array([0, 0, 0, 1])
    assert [m[0] for m in worst_mistakes(probs, y)] == [3, 0, 2]
    assert worst_mistakes(PROBS[:2], Y[:2]) == []


@pytest.mark.parametrize("probs, y, names, message", [
    (PROBS, Y[:5], NAMES, "labels must have shape (6,)"),
    (PROBS[0], Y, NAMES, "shape (N, classes)"),
    (PROBS, np.array([0, 0, 0, 1, 1, 3]), NAMES, "label 3 out of range; valid: 0..2"),
    (PROBS, Y, ["cat", "dog"], "2 class names for 3 classes"),
    (PROBS, Y.astype(float), NAMES, "integer class indices"),
    (np.zeros((0, 3)), np.zeros(0, dtype=int), NAMES, "0 samples"),
])
def test_bad_input_is_one_clear_line(probs, y, names, message):
    with pytest.raises(CnnkitError) as err:
        classification_report(probs, y, names)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_format_report_is_an_aligned_table(report):
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["cat", "1.0000", "0.6667", "0.8000", "3"]
    assert any(line.split() == ["accuracy", "0.6667", "6"] for line in lines)
    # Numbers line up: every per-class and average row is as wide as the header.
    rows = lines[2:5] + [line for line in lines if line.lstrip().startswith(("macro", "weighted"))]
    assert len(rows) == 5 and {len(line) for line in rows} == {len(lines[0])}
    assert "rows = true class" in text
    cm_rows = [line.split() for line in lines[-3:]]
    assert cm_rows == [["cat", "2", "1", "0"], ["dog", "0", "1", "1"], ["bird", "0", "0", "1"]]


def test_format_report_numbers_columns_when_names_are_long():
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=200)
    y = rng.integers(0, 10, 200)
    text = format_report(classification_report(probs, y, names))
    lines = text.splitlines()
    assert lines[-11].split() == [str(i) for i in range(10)]
    assert lines[-1].startswith("9 Ankle boot")
    assert max(len(line) for line in lines) <= 100


def test_metrics_match_scikit_learn_on_random_predictions():
    """Our numpy metrics are scikit-learn's definitions, including a never-predicted class."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 500)
    probs = rng.random((500, 5))
    probs[:, 4] = 0  # class 4 is never predicted: precision 0, not NaN
    report = classification_report(probs, y)
    pred, labels = probs.argmax(1), list(range(5))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    assert np.allclose([c["precision"] for c in report["per_class"]], p)
    assert np.allclose([c["recall"] for c in report["per_class"]], r)
    assert np.allclose([c["f1"] for c in report["per_class"]], f)
    for how in ("macro", "weighted"):
        ref = precision_recall_fscore_support(y, pred, labels=labels, average=how, zero_division=0)
        got = report[f"{how}_avg"]
        assert np.allclose([got["precision"], got["recall"], got["f1"]], ref[:3])
    assert report["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
