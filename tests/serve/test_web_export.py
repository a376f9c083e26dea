"""`cnnkit export --format web`: a folder served by a plain static server classifies in Chromium
with onnxruntime-web, agreeing with onnxruntime-python, and asks nothing of any other host."""
import functools
import http.server
import threading

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data import load_dataset
from cnnkit.serve.onnx import open_session, run_session

IMAGES = 1000


@pytest.fixture(scope="module")
def site(digit_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("web") / "site"
    assert main(["export", str(digit_run.path), "--format", "web", "--out", str(out)]) == 0
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def page(browser, site):
    _, url = site
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(url + "/index.html")
    page.wait_for_function("document.body.dataset.ready !== 'false'", timeout=60_000)
    assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#facts")
    yield page, asked, url
    page.close()


def test_the_site_holds_the_page_the_model_and_onnxruntime_web(site):
    out, _ = site
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["bars.js", "index.html", "model.json", "model.onnx",
                     "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm",
                     "ort/ort.wasm.min.js", "site.js", "style.css"]


def test_the_browser_agrees_with_onnxruntime_python_on_1000_test_images(page, site):
    tab, _, _ = page
    out, _ = site
    x = load_dataset("fashion-mnist").x_test[:IMAGES].numpy()  # (1000, 28, 28, 1) uint8
    session, meta = open_session(out / "model.onnx")
    want = run_session(session, x, meta)  # (1000, 10)
    got = np.concatenate([
        np.asarray(tab.evaluate("([p, n]) => window.cnnkitClassify(p, n)",
                                [x[i:i + 100].reshape(-1).tolist(), len(x[i:i + 100])]),
                   np.float32).reshape(-1, want.shape[1])
        for i in range(0, IMAGES, 100)])
    assert (got.argmax(1) == want.argmax(1)).all()
    assert np.abs(got - want).max() < 1e-4


def test_a_drawing_gets_the_serve_pages_bars_and_nothing_leaves_the_host(page):
    tab, asked, url = page
    box = tab.locator("#canvas").bounding_box()
    x0, y0 = box["x"] + 140, box["y"] + 50
    tab.mouse.move(x0, y0)
    tab.mouse.down()
    for k in range(1, 11):  # a vertical stroke: a one
        tab.mouse.move(x0, y0 + 18 * k)
    tab.mouse.up()
    tab.wait_for_function("document.querySelectorAll('#bars .bar').length === 5")
    top = tab.get_attribute("#bars", "data-top")
    assert top in [str(i) for i in range(10)]
    assert tab.locator("#bars .bar.top").get_attribute("data-class") == top
    assert "28×28×1, exactly the pixels the model classified" in tab.inner_text("#input-note")
    assert asked and all(u.startswith(url) or u.startswith(("data:", "blob:")) for u in asked)


def test_without_onnxruntime_web_the_export_says_where_to_get_it(digit_run, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("CNNKIT_ORT_WEB", str(tmp_path / "nowhere"))
    assert main(["export", str(digit_run.path), "--format", "web",
                 "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime-web's files are not in" in err
    assert "make setup" in err and not (tmp_path / "site").exists()


def test_a_folder_that_is_not_empty_is_refused(digit_run, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["export", str(digit_run.path), "--format", "web", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "a folder that is not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_the_static_page_speaks_korean_in_a_korean_browser(browser, site):
    _, url = site
    context = browser.new_context(locale="ko-KR", viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    tab.goto(url + "/index.html")
    tab.wait_for_function("document.body.dataset.ready !== 'false'", timeout=60_000)
    box = tab.locator("#canvas").bounding_box()
    tab.mouse.move(box["x"] + 140, box["y"] + 50)
    tab.mouse.down()
    for k in range(1, 11):  # a vertical stroke
        tab.mouse.move(box["x"] + 140, box["y"] + 50 + 18 * k)
    tab.mouse.up()
    tab.wait_for_function("document.querySelectorAll('#bars .bar').length === 5")
    seen = [tab.get_attribute("html", "lang"), tab.inner_text("#camera"),
            tab.inner_text("#facts"), tab.inner_text("#input-note"),
            tab.inner_text("#bars .bar.top .label"), tab.get_attribute("#bars", "data-top")]
    context.close()

    lang, camera, facts, note, label, top = seen
    assert lang == "ko" and camera == "카메라" and facts.startswith("클래스 10개")
    assert "모델이 분류한 바로 그 픽셀 (그림)" in note
    korean = "영 일 이 삼 사 오 육 칠 팔 구".split()
    assert label == f"{top} · {korean[int(top)]}"
