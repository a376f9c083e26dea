"""report.html: one self-contained page per run, written at the end of a full run and again by
`cnnkit report RUN`, checked as text and in a real browser (Debian's Chromium via Playwright)."""
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.look.html import BUDGET_BYTES
from cnnkit.runs.pages import write_report_html

SECTIONS = ["Data", "Model", "Training", "Test results", "Inside the model", "Doctor"]
# Names a folder of the user's may carry: markup and entities must show as text.
ODD_CLASSES = ['<i>cat&dog', '"quoted" <x>']


def digits_run(out: Path, **more):
    return cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=2,
                                     batch_size=64, seed=1, verbose=0, out=str(out), **more))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    digits_run(out, val_split=0.2)
    return out


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    """A folder dataset whose class names and run directory hold HTML's special characters."""
    root = tmp_path_factory.mktemp("data") / "odd"
    rng = np.random.default_rng(0)
    for c, name in enumerate(ODD_CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(15):
            pixels = rng.integers(0, 60, (8, 8), dtype=np.uint8)
            pixels[:, c * 4:c * 4 + 4] += 180  # class 0 bright on the left, class 1 on the right
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    out = tmp_path_factory.mktemp("runs") / 'run <&> "x"'
    cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset=f"folder:{root}", epochs=1,
                              batch_size=8, seed=1, verbose=0, out=str(out)))
    return out


def page_of(run: Path) -> str:
    return (run / "report.html").read_text(encoding="utf-8")


def test_a_full_run_writes_one_page_under_budget_with_every_section(run_dir):
    page = page_of(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())

    assert (run_dir / "report.html").stat().st_size <= BUDGET_BYTES
    assert re.findall(r"<h2>(.*?)</h2>", page) == SECTIONS
    for heading in ["Images per class", "Training images", "Diagram", "Options of the run",
                    "Confusion matrix", "Most confident mistakes", "Sample predictions",
                    "First-layer filters", "Feature maps of one test image", "Grad-CAM"]:
        assert f"<h3>{heading}" in page
    assert f"test accuracy <b>{metrics['test_accuracy']:.4f}</b>" in page
    assert "<svg" in page  # the layer diagram, inline
    assert "not available" not in page  # the diagram and the inside of the model are drawn


def test_the_page_needs_nothing_outside_itself(run_dir):
    page = page_of(run_dir)

    assert all(src.startswith("data:image/") for src in re.findall(r'src="([^"]*)"', page))
    assert not re.search(r"<script|<link|@import|url\((?!#)", page, re.IGNORECASE)  # #: in-page
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))


def test_the_numbers_are_the_runs(run_dir):
    page = page_of(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = (run_dir / "history.csv").read_text().splitlines()

    for c in metrics["per_class"]:  # the per-class table, row by row
        assert (f"<td>{c['class']}</td><td>{c['precision']:.4f}</td><td>{c['recall']:.4f}</td>"
                f"<td>{c['f1']:.4f}</td><td>{c['support']}</td>") in page
    # the run's own splits: 20% of the 1,437 training digits held out for validation
    splits = json.loads((run_dir / "config.json").read_text())["resolved"]["splits"]
    assert splits["train"] + splits["val"] == 1437 and splits["test"] == 360
    for name, n in splits.items():
        assert f"<td>{name} images</td><td>{n:,}</td>" in page
    assert len(history) == 3 and "<dt>val_split</dt><dd>0.2</dd>" in page
    # both confusion matrices: 10 × 10 cells each; the normalized rows sum to 1
    cells = re.findall(r'title="[^"]*">([0-9.]*)</span>', page)
    assert len(cells) == 200
    counts, shares = np.array(cells[:100], float), np.array(cells[100:], float)
    assert counts.sum() == 360
    assert np.allclose(shares.reshape(10, 10).sum(axis=1), 1, atol=0.06)  # 2-decimal rounding


def test_cnnkit_report_rebuilds_the_same_page_from_the_run_directory(tmp_path, capsys):
    run = tmp_path / "r"
    digits_run(run)
    written = page_of(run)
    (run / "report.html").unlink()

    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert page_of(run) == written


def test_a_folder_run_is_rebuilt_and_its_names_are_escaped(odd_run):
    written = page_of(odd_run)
    rebuilt = write_report_html(odd_run).read_text(encoding="utf-8")  # at the model's size

    assert rebuilt == written
    for name in ODD_CLASSES:
        assert name not in written
        assert html.escape(name) in written
    assert "run &lt;&amp;&gt; &quot;x&quot;" in written


def test_the_page_is_drawn_again_from_the_run_alone_without_its_data(tmp_path, capsys):
    """report.html comes from what the run kept (best/predictions.npz): with the images gone,
    the page is drawn again the same, so nothing was split or evaluated again (issue 26)."""
    import shutil

    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 60, (8, 8), dtype=np.uint8)
            pixels[:, c * 4:c * 4 + 4] += 180
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    run = tmp_path / "run"
    cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset=f"folder:{root}", epochs=1,
                              batch_size=8, seed=1, verbose=0, out=str(run)))
    written = page_of(run)
    shutil.rmtree(root)

    assert main(["report", str(run)]) == 0
    assert page_of(run) == written


def test_a_run_stopped_before_its_end_gets_its_best_model_so_far_evaluated(run_dir, tmp_path):
    """What a run killed after an epoch holds: config.json, history.csv, state/, best/ (from
    ModelCheckpoint), but no metrics.json and no saved predictions."""
    import shutil

    stopped = tmp_path / "stopped"
    shutil.copytree(run_dir, stopped)
    for name in ("metrics.json", "report.html", "best/predictions.npz"):
        (stopped / name).unlink()

    page = write_report_html(stopped).read_text(encoding="utf-8")
    accuracy = cnnkit.evaluate(stopped).accuracy
    assert "the run has not finished (no metrics.json): its best model so far" in page
    assert f"test accuracy <b>{accuracy:.4f}</b>" in page


@pytest.mark.parametrize("make", ["empty folder", "no such folder", "no saved model"])
def test_report_of_what_is_not_a_finished_run_is_one_line_and_writes_nothing(
        make, run_dir, tmp_path, capsys):
    target = tmp_path / "target"
    if make == "empty folder":
        target.mkdir()
    elif make == "no saved model":  # a run stopped before its first epoch ended
        target.mkdir()
        (target / "config.json").write_text((run_dir / "config.json").read_text())
    before = sorted(tmp_path.rglob("*"))

    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"cnnkit: error: {target}: ")
    assert ("no saved model yet" if make == "no saved model" else "not a run directory") in err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_model_without_convolutions_still_gets_its_page(tmp_path):
    mlp = {"name": "mlp", "input_shape": [8, 8, 1],
           "layers": [{"Flatten": {}}, {"Dense": {"units": 10, "activation": "softmax"}}]}
    cnnkit.run(cnnkit.RunSpec(model=mlp, dataset="digits", epochs=1, seed=1, verbose=0,
                              out=str(tmp_path / "mlp")))
    page = page_of(tmp_path / "mlp")

    assert re.findall(r"<h2>(.*?)</h2>", page) == SECTIONS
    assert page.count("needs a convolutional model") == 2  # filters and Grad-CAM
    assert "no convolution or pooling, so no feature maps" in page


# -- in a real browser (the `browser` fixture: tests/conftest.py) -------------------------------
def open_page(browser, path: Path):
    """The page loaded as a user opens it, with every request and console error it made."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, requests, errors


def test_chromium_shows_every_image_and_asks_for_nothing(browser, run_dir, tmp_path):
    path = run_dir / "report.html"
    page, requests, errors = open_page(browser, path)
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    page.close()

    assert len(images) > 40 and [alt for alt, shown in images if not shown] == []
    assert errors == []
    assert [u for u in requests if not u.startswith("data:")] == [path.resolve().as_uri()]
    assert width <= 1200  # nothing wider than the window: no sideways scrolling
    assert Image.open(shot).size[1] > 3000  # the whole report, not a blank first screen


def test_chromium_shows_odd_class_names_as_text(browser, odd_run):
    page, requests, errors = open_page(browser, odd_run / "report.html")
    cells = page.eval_on_selector_all("#data td", "els => els.map(e => e.textContent)")
    tags = page.eval_on_selector_all("i, x", "els => els.length")
    page.close()

    assert set(ODD_CLASSES) <= set(cells) and tags == 0 and errors == []
    assert [u for u in requests if not u.startswith("data:")] == [
        (odd_run / "report.html").resolve().as_uri()]
