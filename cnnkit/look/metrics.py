"""Classification metrics from predicted probabilities: the numbers `cnnkit evaluate` reports.

Everything here is numpy in, plain Python out (floats, ints, lists), so a report goes straight
to JSON, the terminal and report.md. No torch: the model's forward pass happens elsewhere.

    report = classification_report(probs, y, class_names)   # probs (N, K), y (N,)
    print(format_report(report))
    for index, true, pred, confidence in worst_mistakes(probs, y, k=16): ...
    calibration(probs, y)["ece"]                              # expected calibration error
"""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError

# Keras clips probabilities to [eps, 1 - eps] before the log; the same epsilon keeps our loss
# equal to the one Keras prints and finite when a model gives the true class probability 0.
EPSILON = 1e-7
CALIBRATION_BINS = 15  # Guo et al. 2017 ("On Calibration of Modern Neural Networks") use 15


def _check(probs, y, class_names=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: probs (N, K) float64, y (N,) int64, labels in 0..K-1."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if probs.ndim != 2:
        raise CnnkitError(f"probabilities must have shape (N, classes); got {probs.shape}")
    if probs.shape[1] == 1:  # raw sigmoid outputs: the classic binary-classifier slip
        raise CnnkitError(f"probabilities must have one column per class; got {probs.shape} — "
                          "for a 1-unit sigmoid model pass [1 - p, p] "
                          "(cnnkit.model.outputs.probabilities)")
    if y.ndim != 1 or len(y) != len(probs):
        raise CnnkitError(f"labels must have shape ({len(probs)},) to match the probabilities; "
                          f"got {y.shape}")
    if len(y) == 0:
        raise CnnkitError("nothing to evaluate: 0 samples")
    if not np.issubdtype(y.dtype, np.integer):
        raise CnnkitError(f"labels must be integer class indices; got dtype {y.dtype}")
    k = probs.shape[1]
    if class_names is not None and len(class_names) != k:
        raise CnnkitError(f"{len(class_names)} class names for {k} classes of probabilities")
    if y.min() < 0 or y.max() >= k:
        bad = int(y[(y < 0) | (y >= k)][0])
        raise CnnkitError(f"label {bad} out of range; valid: 0..{k - 1}")
    return probs, y.astype(np.int64)


def cross_entropy(probs, y) -> float:
    """Mean -log p(true class), probabilities clipped to [EPSILON, 1 - EPSILON] as Keras does."""
    probs, y = _check(probs, y)
    p_true = np.clip(probs[np.arange(len(y)), y], EPSILON, 1.0 - EPSILON)
    return float(-np.log(p_true).mean())


def classification_report(probs, y, class_names=None) -> dict:
    """Loss, accuracy, per-class precision/recall/F1, averages and the confusion matrix; for
    imbalanced classes, balanced accuracy (the mean recall of the classes the labels hold, as
    scikit-learn's balanced_accuracy_score), macro-F1 (over every class) and each class's recall.

    `confusion_matrix[i][j]` counts samples of true class i predicted as class j (rows = true,
    as in scikit-learn). A class never predicted has precision 0 (not a warning, not NaN).
    Plain numpy, with scikit-learn's definitions: importing sklearn.metrics alone costs more
    than a second, which every training run would pay at its end."""
    probs, y = _check(probs, y, class_names)
    k = probs.shape[1]
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    pred = probs.argmax(axis=1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)  # rows = true class
    hits, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    per_class = [
        {"class": names[i], "precision": float(precision[i]), "recall": float(recall[i]),
         "f1": float(f1[i]), "support": int(support[i])}
        for i in range(k)
    ]
    weights = support / support.sum()
    return {
        "loss": cross_entropy(probs, y),
        "accuracy": float((pred == y).mean()),
        "samples": int(len(y)),
        "class_names": names,
        "per_class": per_class,
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                      "f1": float(f1.mean()), "support": int(len(y))},
        "weighted_avg": {"precision": float(precision @ weights), "recall": float(recall @ weights),
                         "f1": float(f1 @ weights), "support": int(len(y))},
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1.mean()),
        "per_class_recall": {names[i]: float(recall[i]) for i in range(k)},
        "confusion_matrix": cm.tolist(),
        **calibration(probs, y),
    }


def calibration(probs, y, bins: int = CALIBRATION_BINS) -> dict:
    """Does a "0.9" come true nine times in ten? The top-1 confidence (the largest
    probability) of each sample falls into one of `bins` equal-width bins (lower, upper] of
    [0, 1]; each bin compares its mean confidence with its accuracy.

    "ece": the expected calibration error, sum over bins of |accuracy - confidence| weighted
    by the bin's share of the samples; "max_calibration_error": the largest gap of a non-empty
    bin; "reliability": each bin's lower, upper, count, confidence and accuracy (None where
    empty), what the reliability diagram draws."""
    probs, y = _check(probs, y)
    if not isinstance(bins, int) or bins < 1:
        raise CnnkitError(f"bins must be an integer >= 1; got {bins!r}")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.arange(bins + 1) / bins  # m / bins exactly, as the definition writes it
    # the number of inner edges below each confidence: its bin, right edge included
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    filled = count > 0
    mean_conf = _ratio(conf_sum, count)
    accuracy = _ratio(hit_sum, count)
    gap = np.abs(accuracy - mean_conf)
    return {
        "ece": float((gap * count).sum() / len(y)),
        "max_calibration_error": float(gap[filled].max()),
        "reliability": [
            {"lower": float(edges[i]), "upper": float(edges[i + 1]), "count": int(count[i]),
             "confidence": float(mean_conf[i]) if filled[i] else None,
             "accuracy": float(accuracy[i]) if filled[i] else None}
            for i in range(bins)
        ],
    }


def calibration_text(figures: dict) -> str:
    """'expected calibration error 0.0312, maximum calibration error 0.1480 (15 bins)'."""
    return (f"expected calibration error {figures['ece']:.4f}, maximum calibration error "
            f"{figures['max_calibration_error']:.4f} ({CALIBRATION_BINS} bins)")


def _ratio(a, b) -> np.ndarray:
    """a / b elementwise, 0 where b is 0 (scikit-learn's zero_division=0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def worst_mistakes(probs, y, k: int = 16) -> list[tuple[int, int, int, float]]:
    """The k misclassified samples the model was surest about, most confident first.

    Each is (index, true class, predicted class, probability given to the prediction); ties
    keep index order so the gallery is the same on every run."""
    probs, y = _check(probs, y)
    if k < 0:
        raise CnnkitError(f"k must be >= 0; got {k}")
    pred = probs.argmax(axis=1)
    confidence = probs[np.arange(len(y)), pred]
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    return [(int(i), int(y[i]), int(pred[i]), float(confidence[i])) for i in order]


def format_report(report: dict) -> str:
    """A plain aligned table like scikit-learn's classification_report, then the confusion matrix.

    No colours or box characters: the same text goes to a terminal, a pipe and report.md."""
    return _format_metrics(report) + "\n\n" + _format_confusion(report)


def _format_metrics(report: dict) -> str:
    rows = [(c["class"], c) for c in report["per_class"]]
    width = max([len(name) for name, _ in rows] + [len("weighted avg")])
    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
    lines = [head, ""]

    def line(name, m):
        return (f"{name:>{width}}  {m['precision']:>9.4f}  {m['recall']:>9.4f}  "
                f"{m['f1']:>9.4f}  {m['support']:>9d}")

    lines += [line(name, m) for name, m in rows]
    lines.append("")
    n = report["samples"]
    lines.append(f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {report['accuracy']:>9.4f}  {n:>9d}")
    lines.append(line("macro avg", report["macro_avg"]))
    lines.append(line("weighted avg", report["weighted_avg"]))
    lines.append("")
    lines.append(f"loss {report['loss']:.4f} - accuracy {report['accuracy']:.4f} ({n} samples)")
    if "balanced_accuracy" in report:  # a report saved before these figures has neither
        lines.append(f"balanced accuracy {report['balanced_accuracy']:.4f} - macro F1 "
                     f"{report['macro_f1']:.4f}")
    if "ece" in report:
        lines.append(calibration_text(report))
    return "\n".join(lines)


def _format_confusion(report: dict) -> str:
    cm = report["confusion_matrix"]
    names = report["class_names"]
    k = len(names)
    count_w = max(len(str(v)) for row in cm for v in row)
    # Class names head the columns when they fit; otherwise (ten long Fashion-MNIST names)
    # columns are numbered and each row says which number is which class.
    by_name = max(count_w, max(len(n) for n in names)) * k + 2 * k <= 100
    if by_name:
        col_w = max(count_w, max(len(n) for n in names))
        cols, row_labels = names, names
    else:
        col_w = max(count_w, len(str(k - 1)))
        cols = [str(i) for i in range(k)]
        row_labels = [f"{i} {n}" for i, n in enumerate(names)]
    label_w = max(len(s) for s in row_labels)
    lines = ["confusion matrix (rows = true class, columns = predicted class)",
             " " * label_w + "".join(f"  {c:>{col_w}}" for c in cols)]
    for label, row in zip(row_labels, cm):
        lines.append(f"{label:<{label_w}}" + "".join(f"  {v:>{col_w}}" for v in row))
    return "\n".join(lines)
