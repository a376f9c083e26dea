"""Calibration: the expected and maximum calibration error (15 equal-width bins of the top-1
confidence) and the reliability diagram, in every report and in `cnnkit evaluate`."""
import json
import re

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.look.metrics import calibration, classification_report, format_report


def reference_ece(probs, y, bins=15):
    """The textbook definition, sample by sample: bin m holds the confidences in
    ((m-1)/M, m/M]; ECE = sum_m |B_m|/n |acc(B_m) - conf(B_m)|, MCE = max_m of the gap."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    ece, mce = 0.0, 0.0
    for m in range(bins):
        members = [i for i in range(len(y)) if m / bins < conf[i] <= (m + 1) / bins]
        if members:
            gap = abs(np.mean([pred[i] == y[i] for i in members]) - np.mean(conf[members]))
            ece += len(members) / len(y) * gap
            mce = max(mce, gap)
    return ece, mce


def test_five_samples_computed_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.35, 0.65]])
    y = np.array([0, 1, 1, 0, 1])
    # one sample a bin of width 1/15, so each gap is |right - confidence|:
    # 0.6 in (0.533, 0.6] right: 0.4;  0.65 in (0.6, 0.667] right: 0.35;
    # 0.7 in (0.667, 0.733] right: 0.3;  0.8 in (0.733, 0.8] (its right edge) wrong: 0.8;
    # 0.9 in (0.867, 0.933] right: 0.1
    c = calibration(probs, y)

    assert c["ece"] == pytest.approx((0.1 + 0.8 + 0.3 + 0.4 + 0.35) / 5)
    assert c["max_calibration_error"] == pytest.approx(0.8)
    filled = [(b["count"], b["confidence"], b["accuracy"]) for b in c["reliability"] if b["count"]]
    assert filled == [(1, 0.6, 1.0), (1, pytest.approx(0.65), 1.0), (1, 0.7, 1.0),
                      (1, 0.8, 0.0), (1, 0.9, 1.0)]
    assert len(c["reliability"]) == 15 and c["reliability"][-1]["upper"] == 1.0


def test_a_bin_averages_its_confidences_and_weighs_by_its_share():
    # three samples in (0.933, 1]: confidences 0.95, 0.97, 1.0 (mean 0.94...), two right;
    # one in (0.467, 0.533]: 0.5, wrong
    probs = np.array([[0.95, 0.05], [0.03, 0.97], [1.0, 0.0], [0.5, 0.5]])
    y = np.array([0, 1, 1, 1])
    c = calibration(probs, y)
    gap_top = abs(2 / 3 - (0.95 + 0.97 + 1.0) / 3)

    assert c["ece"] == pytest.approx(3 / 4 * gap_top + 1 / 4 * 0.5)
    assert c["max_calibration_error"] == pytest.approx(0.5)


def test_a_calibrated_model_scores_zero_and_an_overconfident_one_its_gap():
    # ten samples at 0.7 confidence, seven right: exactly as sure as it is right
    probs = np.tile([0.7, 0.3], (10, 1))
    y = np.array([0] * 7 + [1] * 3)
    assert calibration(probs, y)["ece"] == pytest.approx(0)
    assert calibration(probs, y)["max_calibration_error"] == pytest.approx(0)
    # 95% sure, right half of the time
    probs = np.tile([0.95, 0.05], (10, 1))
    y = np.array([0, 1] * 5)
    assert calibration(probs, y)["ece"] == pytest.approx(0.45)


def test_the_bins_agree_with_the_textbook_loop_on_random_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 10, 500)
    y[:300] = probs[:300].argmax(axis=1)  # some right, some wrong
    c = calibration(probs, y)
    ece, mce = reference_ece(probs, y)

    assert c["ece"] == pytest.approx(ece) and c["max_calibration_error"] == pytest.approx(mce)
    assert sum(b["count"] for b in c["reliability"]) == 500


@pytest.mark.parametrize("bins", [0, -3, 2.5])
def test_a_bad_bin_count_is_one_line(bins):
    with pytest.raises(CnnkitError, match=rf"bins must be an integer >= 1; got {bins}"):
        calibration(np.array([[0.5, 0.5]]), np.array([0]), bins=bins)


def test_the_printed_report_says_both_errors():
    probs = np.tile([0.95, 0.05], (10, 1))
    text = format_report(classification_report(probs, np.array([0, 1] * 5)))
    assert "expected calibration error 0.4500, maximum calibration error 0.4500 (15 bins)" in text


# -- a run's reports and `cnnkit evaluate` ------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=2, batch_size=64,
                              seed=1, verbose=0, out=str(out), val_split=0.2))
    return out


def test_a_run_records_its_calibration_in_every_report(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    saved = np.load(run_dir / "best" / "predictions.npz")  # the best model's test predictions
    c = calibration(saved["probs"], saved["labels"])

    assert metrics["ece"] == pytest.approx(c["ece"]) and 0 < metrics["ece"] < 1
    assert metrics["max_calibration_error"] == pytest.approx(c["max_calibration_error"])
    assert metrics["max_calibration_error"] >= metrics["ece"]
    figures = (f"expected calibration error {metrics['ece']:.4f}, maximum calibration error "
               f"{metrics['max_calibration_error']:.4f} (15 bins)")
    md = (run_dir / "report.md").read_text()
    assert figures in md and "![reliability diagram](reliability.png)" in md
    page = (run_dir / "report.html").read_text()
    assert "<h3>Calibration</h3>" in page and figures in page
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="reliability diagram"', page)
    with Image.open(run_dir / "reliability.png") as im:
        assert im.size[0] >= 400 and im.size[1] >= 500


def test_the_page_drawn_again_without_reliability_png_still_shows_it(run_dir, tmp_path):
    from cnnkit.runs.pages import write_report_html

    (run_dir / "reliability.png").rename(tmp_path / "kept.png")
    try:
        page = write_report_html(run_dir).read_text()
    finally:
        (tmp_path / "kept.png").rename(run_dir / "reliability.png")
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="reliability diagram"', page)


def test_cnnkit_evaluate_prints_the_runs_calibration(run_dir, tmp_path, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())

    assert main(["evaluate", str(run_dir), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert (f"expected calibration error {metrics['ece']:.4f}, maximum calibration error "
            f"{metrics['max_calibration_error']:.4f} (15 bins)") in out
    assert f"reliability diagram: {tmp_path / 'ev' / 'reliability.png'}" in out
    assert (tmp_path / "ev" / "reliability.png").stat().st_size > 1000

    assert main(["evaluate", str(run_dir), "--json", "--out", str(tmp_path / "ev2")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ece"] == pytest.approx(metrics["ece"], abs=1e-6)
    assert report["images"]["reliability"] == str(tmp_path / "ev2" / "reliability.png")
    assert [b["count"] for b in report["reliability"]] and sum(
        b["count"] for b in report["reliability"]) == report["samples"] == 360
