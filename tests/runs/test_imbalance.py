"""Imbalanced classes through a whole run: the measured effect of --class-weight balanced and
--sampler balanced on a rare class, the flags on train, cv and tune (recorded in config.json,
a bad value one line and exit 2 with nothing written), the warning a run and `data show` give,
and balanced accuracy, macro-F1 and per-class recall in metrics.json, the reports and evaluate."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit.cli import build_parser, main
from cnnkit.look.metrics import classification_report

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_imbalance import run_once, write_cut_digits  # noqa: E402

WARNING = "Warning: the training classes are imbalanced: class '1' has"


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """digits with class 3 cut to a tenth of its training images (15 of 145); test split whole."""
    path = tmp_path_factory.mktemp("imbalance") / "digits-cut.npz"
    assert write_cut_digits(path, rare=3) == (15, 37)
    return path


def test_balanced_weights_and_sampler_raise_the_rare_class_recall(cut):
    """The fast recipe at the same seed (fp32, one thread: the same figures on any CPU):
    class 3's test recall with either option is at least 10 points above the baseline's."""
    figures = {way: run_once(cut, 0, None, 3, options, precision="fp32")
               for way, options in (("baseline", {}), ("weights", {"class_weight": "balanced"}),
                                    ("sampler", {"sampler": "balanced"}))}
    base = figures["baseline"]["recall"]
    assert figures["weights"]["recall"] >= base + 0.10, figures
    assert figures["sampler"]["recall"] >= base + 0.10, figures
    assert figures["weights"]["balanced"] > figures["baseline"]["balanced"], figures


SMALL = ["--recipe", "fast", "--epochs", "1", "--threads", "1", "--seed", "0"]


def test_the_cli_records_a_weight_file_and_reports_the_balanced_figures(cut, tmp_path, capsys):
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps({"3": 10, "0": 0.5}))
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--dataset", f"npz:{cut}", "--class-weight", str(weights),
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "imbalanced" not in said  # the weights are the answer to it
    train = json.loads((out / "config.json").read_text())["options"]["train"]
    assert train["class_weight"] == {"3": 10, "0": 0.5} and train["sampler"] is None
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class_recall"]) == {str(i) for i in range(10)}
    assert 0 < metrics["balanced_accuracy"] <= 1 and 0 < metrics["macro_f1"] <= 1
    line = (f"balanced accuracy {metrics['balanced_accuracy']:.4f}, macro-F1 "
            f"{metrics['macro_f1']:.4f}")
    assert line in (out / "report.md").read_text()
    assert line in (out / "report.html").read_text()
    assert main(["evaluate", str(out)]) == 0
    assert f"balanced accuracy {metrics['balanced_accuracy']:.4f} - macro F1" in \
        capsys.readouterr().out


def test_a_run_warns_of_imbalanced_classes_unless_an_option_answers_it(cut, capsys):
    assert main(["train", *SMALL, "--dataset", f"npz:{cut}", "--artifacts", "none"]) == 0
    said = capsys.readouterr().out
    assert WARNING in said and "consider --class-weight balanced or --sampler balanced" in said
    assert main(["train", *SMALL, "--dataset", f"npz:{cut}", "--artifacts", "none",
                 "--sampler", "balanced"]) == 0
    assert "imbalanced" not in capsys.readouterr().out


def test_data_show_warns(cut, capsys):
    assert main(["data", "show", f"npz:{cut}"]) == 0
    said = " ".join(capsys.readouterr().out.split())  # rich wraps the line
    assert "Warning: the training classes are imbalanced: class '1' has 146 images, class '3' " \
        "15 (9.7x); consider --class-weight balanced or --sampler balanced" in said
    assert main(["data", "show", "digits"]) == 0
    assert "imbalanced" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--class-weight", "heavy"], "--class-weight heavy is neither 'balanced' nor a JSON file"),
    (["--class-weight", "W"], "--class-weight: unknown class 'seven'; valid: a class name (0, 1"),
    (["--sampler", "even"], "unknown --sampler 'even'; valid: balanced"),
])
def test_a_bad_value_is_one_line_exit_2_and_nothing_written(flags, message, tmp_path, capsys):
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps({"seven": 2}))
    flags = [str(weights) if f == "W" else f for f in flags]
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", *SMALL, "--dataset", "digits", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_cv_takes_the_options_and_tune_sets_class_weight_on_its_base(tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(["cv", "--recipe", "fast", "--dataset", "digits", "--limit", "200",
                 "--epochs", "1", "--folds", "2", "--threads", "1", "--seed", "0",
                 "--class-weight", "balanced", "--sampler", "balanced", "--quiet",
                 "--out", str(out)]) == 0
    train = json.loads((out / "fold-1" / "config.json").read_text())["options"]["train"]
    assert (train["class_weight"], train["sampler"]) == ("balanced", "balanced")
    from cnnkit.cli.tune import _with_images

    space = tmp_path / "space.yaml"
    space.write_text("base: {recipe: fast, dataset: digits}\nspace: {lr: [0.001, 0.01]}\n")
    weights = tmp_path / "w.json"
    weights.write_text('{"0": 2}')
    args = build_parser().parse_args(["tune", str(space), "--class-weight", str(weights)])
    assert _with_images(args).base["class_weight"] == {"0": 2}  # the file's weights, read once


def test_the_figures_are_scikit_learns():
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [40, 20, 8, 2])
    probs = rng.dirichlet(np.ones(4), len(y))
    probs[np.arange(len(y))[::2], y[::2]] += 1  # right half the time
    pred = probs.argmax(1)
    report = classification_report(probs, y, list("abcd"))
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert list(report["per_class_recall"].values()) == pytest.approx(
        recall_score(y, pred, average=None))


def test_a_run_file_may_name_a_weight_file_and_records_its_weights(tmp_path):
    (tmp_path / "w.json").write_text('{"owl": 3}')
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"recipe: fast\nclass_weight: {tmp_path / 'w.json'}\nsampler: balanced\n")
    spec = cnnkit.RunSpec.from_file(run_file).resolved()
    assert spec.to_options()["train"]["class_weight"] == {"owl": 3}
    assert spec.train_config().sampler == "balanced"
