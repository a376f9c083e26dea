"""cnnkit serve's page in a real browser: Debian's Chromium driven by Playwright draws digits
with the mouse, drops a test image, reads the bars, and takes a screenshot."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.serve.app import create_app
from cnnkit.serve.predictor import Predictor


class Tab:
    """A page opened on the server, recording every request and console error it makes."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1200, "height": 1000})
        self.requests, self.errors = [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("body[data-ready=true]")

    def settled(self):
        """Wait until no request is out or waiting (the page's body[data-idle])."""
        self.page.wait_for_selector("body[data-idle=true]", state="attached")

    def bars(self) -> list[tuple[str, float]]:
        rows = self.page.eval_on_selector_all(
            "#bars .bar", "els => els.map(e => [e.dataset.class, e.querySelector('.value').textContent])")
        return [(c, float(v.rstrip("%"))) for c, v in rows]

    def stroke(self, points):
        """A stroke with the mouse: real pointer events, in the canvas's own pixels (280)."""
        box = self.page.locator("#canvas").bounding_box()
        sx, sy = box["width"] / 280, box["height"] / 280
        m = self.page.mouse
        m.move(box["x"] + points[0][0] * sx, box["y"] + points[0][1] * sy)
        m.down()
        for x, y in points[1:]:
            m.move(box["x"] + x * sx, box["y"] + y * sy, steps=2)
        m.up()

    def model_input(self) -> np.ndarray:
        src = self.page.get_attribute("#model-input", "src")
        import base64
        import io

        return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def keep(shot: Path):
    """CNNKIT_SCREENSHOTS=DIR keeps a copy of each screenshot to look at."""
    if os.environ.get("CNNKIT_SCREENSHOTS"):
        Path(os.environ["CNNKIT_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        Image.open(shot).save(Path(os.environ["CNNKIT_SCREENSHOTS"]) / shot.name)


def one() -> list:
    return [(140, 50 + 9 * i) for i in range(21)]  # a vertical stroke, top to bottom


def zero() -> list:
    t = np.linspace(0, 2 * np.pi, 40)
    return list(zip(140 + 60 * np.sin(t), 140 - 90 * np.cos(t)))  # an ellipse, 120 × 180


@pytest.fixture(scope="module")
def tab(browser, digit_server):
    t = Tab(browser, digit_server.url + "/")
    yield t
    t.page.close()


def test_a_drawn_one_and_zero_are_read_right_live_as_drawn(tab, digit_server, predictor_convs,
                                                           tmp_path):
    page = tab.page
    assert page.is_visible("#canvas") and page.text_content("#title") == "seed003-cnn"
    answers, asked = {}, {}
    for digit, points in (("1", one()), ("0", zero())):
        page.click("#clear")
        before = len(tab.requests)
        tab.stroke(points)
        tab.settled()
        asked[digit] = sum("/api/predict" in u for u in tab.requests[before:])
        answers[digit] = tab.bars()
        seen = tab.model_input()
        rows, cols = np.nonzero(seen)
        assert seen.shape == (28, 28) and max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20)
    maps = page.eval_on_selector_all("#maps figcaption", "els => els.map(e => e.textContent)")
    cams = page.eval_on_selector_all("#cam img", "els => els.map(e => e.naturalWidth)")
    shot = tmp_path / "serve_drawn_zero.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot)

    assert [c for c, _ in answers["1"]][0] == "1" and [c for c, _ in answers["0"]][0] == "0"
    assert min(asked.values()) > 1  # live: predictions while the stroke was drawn, not after
    assert len(answers["1"]) == 5 and answers["1"][0][1] > answers["1"][1][1]
    assert [m.split(":")[0] for m in maps] == predictor_convs
    assert len(cams) == 2 and min(cams) > 28
    assert tab.errors == []


def test_undo_takes_back_the_last_stroke(tab):
    page = tab.page
    page.click("#clear")
    tab.stroke(one())
    tab.settled()
    first = tab.model_input()
    tab.stroke([(40, 40), (60, 60)])  # a stray mark
    tab.settled()
    assert not (tab.model_input() == first).all()
    page.click("#undo")
    tab.settled()

    assert (tab.model_input() == first).all() and tab.bars()[0][0] == "1"
    page.click("#clear")
    assert tab.bars() == [] and tab.errors == []


def test_a_dropped_test_image_is_classified_and_the_page_asks_only_its_server(
        tab, digit_run, digit_server, tmp_path):
    page = tab.page
    for label in (7, 2):
        path, pixels = digit_run.test_image(tmp_path, label)
        page.set_input_files("#file", str(path))  # the file picker
        tab.settled()
        assert tab.bars()[0][0] == str(label) and (tab.model_input() == pixels).all()
    # a real drag and drop: a File made in the page, dropped on the zone in a DataTransfer
    path, pixels = digit_run.test_image(tmp_path, 4)
    page.evaluate("""async ([name, bytes]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
    }""", [path.name, list(path.read_bytes())])
    tab.settled()
    shot = tmp_path / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot)

    assert tab.bars()[0][0] == "4" and (tab.model_input() == pixels).all()
    assert page.is_visible("#dropped")
    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape[1] == 1200 and image.shape[0] >= 1000 and image.std() > 20  # not blank
    own = [u for u in tab.requests if not u.startswith(("data:", "blob:"))]
    assert own and all(u.startswith(digit_server.url + "/") for u in own)
    assert tab.errors == []


def test_docs_render_the_api_offline(browser, digit_server):
    t = Tab(browser, digit_server.url + "/docs")
    heads = t.page.eval_on_selector_all("#paths h2 code", "els => els.map(e => e.textContent)")
    t.page.close()

    assert {"POST /api/predict", "POST /api/inspect", "GET /api/model", "GET /healthz"} <= set(heads)
    assert all(u.startswith(digit_server.url + "/") for u in t.requests) and t.errors == []


def test_an_rgb_model_page_has_no_canvas_and_reads_a_dropped_photo(browser, serve, tmp_path):
    server = serve(create_app(Predictor("seed001-example")))  # 24×24×3, 3 classes
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (60, 90, 3), np.uint8)).save(photo)
    t = Tab(browser, server.url + "/")
    canvas = t.page.is_visible("#canvas")
    t.page.set_input_files("#file", str(photo))
    t.settled()
    bars, seen = t.bars(), t.model_input()
    t.page.close()

    assert not canvas and len(bars) == 3 and seen.shape == (24, 24, 3)
    assert abs(sum(v for _, v in bars) - 100) < 0.5 and t.errors == []


@pytest.fixture(scope="module")
def predictor_convs(digit_run):
    model = Predictor(digit_run.path, runtime="torch").model
    return [i.name for i in model.layer_infos() if i.layer.type == "Conv2D"]
