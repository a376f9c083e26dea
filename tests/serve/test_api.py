"""cnnkit serve's JSON API on a real uvicorn server: answers, every limit, concurrency, and the
upload decoder fuzzed (Hypothesis). The `cnnkit serve` command itself: test_serve_cli.py."""
import base64
import io
import json
import struct
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from cnnkit.look.inside import is_convolution
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnkit.serve.app import create_app
from cnnkit.serve.drawing import prepare_drawing
from cnnkit.serve.predictor import Predictor
from cnnkit.serve.uploads import Limits, RequestError, request_pixels

LABEL = 3  # the test digit most tests send


def png_bytes(pixels) -> bytes:
    buf = io.BytesIO()
    (pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)).save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def pixels_of(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def digit(digit_run, tmp_path_factory):
    return digit_run.test_image(tmp_path_factory.mktemp("img"), LABEL)


@pytest.fixture(scope="module")
def predictor(digit_run):
    return Predictor(digit_run.path)


# -- answers ------------------------------------------------------------------------------------
def test_an_image_as_a_file_a_data_url_or_a_body_gets_the_same_answer(digit_server, digit,
                                                                      predictor):
    path, pixels = digit
    data = path.read_bytes()
    url = f"{digit_server.url}/api/predict?top_k=3"
    answers = [httpx.post(url, files={"file": ("d.png", data, "image/png")}),
               httpx.post(url, json={"image": data_url(data)}),
               httpx.post(url, content=data, headers={"Content-Type": "image/png"})]

    assert [r.status_code for r in answers] == [200, 200, 200]
    first = answers[0].json()
    for r in answers[1:]:
        assert r.json()["probabilities"] == first["probabilities"]
    assert first["class_name"] == str(LABEL) and first["index"] == LABEL
    assert [t["class"] for t in first["top_k"]][0] == str(LABEL) and len(first["top_k"]) == 3
    assert np.allclose(first["probabilities"], predictor.predict(pixels), atol=1e-6)
    assert abs(sum(first["probabilities"]) - 1) < 1e-5
    assert (pixels_of(first["input"]) == pixels).all()  # exactly what was sent: 28×28 already
    assert first["input_shape"] == [28, 28, 1] and first["runtime"] == predictor.runtime
    assert first["latency_ms"] >= first["model_ms"] > 0


def test_a_big_photo_is_brought_to_the_model_input_by_the_input_contract(digit_server, digit,
                                                                         predictor):
    from cnnkit.model.inputs import to_pixels

    _, pixels = digit
    big = Image.fromarray(pixels).resize((280, 280), Image.NEAREST).convert("RGB")
    r = httpx.post(f"{digit_server.url}/api/predict",
                   files={"file": ("d.jpg", png_bytes(big), "image/png")})

    seen = pixels_of(r.json()["input"])
    assert seen.shape == (28, 28)
    assert (seen == to_pixels(np.asarray(big), (28, 28, 1))[0][0, :, :, 0].numpy()).all()
    assert np.allclose(r.json()["probabilities"], predictor.predict(np.asarray(big)), atol=1e-6)


@pytest.mark.parametrize("kind", ["1", "0"])
def test_a_drawing_is_prepared_as_mnist_digits_and_read_right(digit_server, kind, drawn):
    canvas = drawn(kind).convert("RGBA")  # what canvas.toDataURL sends: opaque RGBA
    r = httpx.post(f"{digit_server.url}/api/predict?mode=drawing",
                   json={"image": data_url(png_bytes(canvas))})
    answer = r.json()

    seen = pixels_of(answer["input"])
    assert (seen == prepare_drawing(np.asarray(drawn(kind)))).all()
    rows, cols = np.nonzero(seen)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20)  # the ink's box scaled into 20×20
    assert answer["class_name"] == kind


def test_a_photo_of_ink_on_paper_as_a_drawing_is_inverted_and_read_right(digit_server, drawn):
    paper = Image.eval(drawn("1"), lambda v: 255 - v).resize((600, 450)).convert("RGB")
    r = httpx.post(f"{digit_server.url}/api/predict?mode=drawing",
                   files={"file": ("note.jpg", png_bytes(paper), "image/png")})

    seen = pixels_of(r.json()["input"])
    assert seen[0, 0] == 0 and seen.max() == 255  # light ink on black, as MNIST's
    assert r.json()["class_name"] == "1"


def test_inspect_gives_each_convolutions_maps_and_grad_cam(digit_server, digit, predictor):
    path, _ = digit
    r = httpx.post(f"{digit_server.url}/api/inspect",
                   files={"file": ("d.png", path.read_bytes(), "image/png")})
    answer = r.json()

    convs = [i.name for i in predictor.model.layer_infos() if i.layer.type == "Conv2D"]
    assert [m["layer"] for m in answer["feature_maps"]] == convs
    shapes = {i.name: list(i.output_shape) for i in predictor.model.layer_infos()}
    for m in answer["feature_maps"]:
        assert m["shape"] == shapes[m["layer"]]
        assert pixels_of(m["image"]).ndim == 3  # colour tiles
    cam = pixels_of(answer["grad_cam"]["gradcam"])
    assert cam.shape[2] == 3 and cam.shape[0] >= 28 and cam.std() > 0
    assert answer["grad_cam"]["layer"] == convs[-1]
    assert answer["class_name"] == str(LABEL)


def test_the_model_card_health_and_docs(digit_server, digit_run):
    card = httpx.get(f"{digit_server.url}/api/model").json()
    metrics = json.loads((digit_run.path / "metrics.json").read_text())

    assert card["name"] == "seed003-cnn" and card["classes"] == [str(i) for i in range(10)]
    assert card["input_shape"] == [28, 28, 1] and card["drawing"] and card["inspect"]
    assert card["test_accuracy"] == metrics["test_accuracy"] > 0.7
    assert "Total params" in card["summary"]
    assert httpx.get(f"{digit_server.url}/healthz").json()["status"] == "ok"
    schema = httpx.get(f"{digit_server.url}/openapi.json").json()
    assert {"/api/predict", "/api/inspect", "/api/model", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png"} <= set(body)
    docs = httpx.get(f"{digit_server.url}/docs")
    assert docs.status_code == 200 and "/page/docs.js" in docs.text
    assert "http" not in docs.text.replace('href="/openapi.json"', "")  # no CDN


# -- limits -------------------------------------------------------------------------------------
def bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming width × height pixels, with one tiny IDAT: a few dozen bytes."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def small_server(predictor, serve):
    """The digit model with small limits: 64 KiB uploads, 100,000 pixels."""
    return serve(create_app(predictor, Limits(max_upload_bytes=65536, max_pixels=100_000)))


def test_each_limit_is_a_4xx_json_line_and_the_server_keeps_serving(small_server, digit_server,
                                                                    digit):
    path, _ = digit
    url = f"{small_server.url}/api/predict"
    good = path.read_bytes()
    big = bytes(70_000)
    cases = {
        "upload size": (413, httpx.post(url, content=big, headers={"Content-Type": "image/png"})),
        "upload size, chunked": (413, httpx.post(url, content=iter([big[:40000], big[40000:]]),
                                                 headers={"Content-Type": "image/png"})),
        "pixels": (413, httpx.post(url, content=png_bytes(np.zeros((400, 300), np.uint8)),
                                   headers={"Content-Type": "image/png"})),
        "bomb": (413, httpx.post(url, files={"file": ("b.png", bomb_png(100_000, 100_000))})),
        "content type": (415, httpx.post(url, content=good, headers={"Content-Type": "text/plain"})),
        "no content type": (415, httpx.post(url, content=good)),
        "data URL of text": (415, httpx.post(url, json={"image": data_url(b"hi", "text/plain")})),
        "not an image": (415, httpx.post(url, content=b"GIF89a? no: text",
                                         headers={"Content-Type": "image/gif"})),
        "truncated": (422, httpx.post(url, content=good[:len(good) // 2],
                                      headers={"Content-Type": "image/png"})),
        "bad JSON": (400, httpx.post(url, content=b"{", headers={"Content-Type": "application/json"})),
        "no image field": (400, httpx.post(url, json={"picture": data_url(good)})),
        "bad base64": (400, httpx.post(url, json={"image": "data:image/png;base64,@@@"})),
        "no file field": (400, httpx.post(url, files={"other": ("d.png", good)})),
        "bad top_k": (400, httpx.post(f"{url}?top_k=0", content=good,
                                      headers={"Content-Type": "image/png"})),
        "bad mode": (400, httpx.post(f"{url}?mode=sketch", content=good,
                                     headers={"Content-Type": "image/png"})),
        "no route": (404, httpx.get(f"{small_server.url}/api/nothing")),
        "wrong method": (405, httpx.get(url)),
    }
    messages = {name: error_of(r, status) for name, (status, r) in cases.items()}

    assert "65,536 bytes" in messages["upload size"] and "65,536" in messages["upload size, chunked"]
    assert "120,000 pixels, over the limit of 100,000" in messages["pixels"]
    assert "over the limit of 100,000 pixels" in messages["bomb"]
    assert "'text/plain'" in messages["content type"] and "multipart" in messages["content type"]
    assert "not an image" in messages["not an image"]
    assert "top_k" in messages["bad top_k"] and "mode" in messages["bad mode"]
    default = httpx.post(f"{digit_server.url}/api/predict", content=bytes(6 * 2**20),
                         headers={"Content-Type": "image/png"})
    assert "over the limit of 5,242,880 bytes" in error_of(default, 413)
    ok = httpx.post(url, content=good, headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.json()["class_name"] == str(LABEL)


def stalled_upload(url: str, release: threading.Event, out: list):
    """A client that sends half its body and waits (a slow upload) until `release`."""
    def body():
        yield b"\x89PNG\r\n"
        release.wait(20)
        yield b"rest"
    try:
        out.append(httpx.post(url, content=body(), headers={"Content-Type": "image/png"},
                              timeout=30))
    except httpx.HTTPError as e:  # the server may close the connection after answering
        out.append(e)


def test_a_slow_upload_is_cut_off_at_the_time_limit_and_a_full_queue_says_busy(predictor, serve,
                                                                            digit):
    path, _ = digit
    server = serve(create_app(predictor, Limits(request_seconds=0.5, concurrency=1, queue=0)))
    url = f"{server.url}/api/predict"
    release, slow = threading.Event(), []
    client = threading.Thread(target=stalled_upload, args=(url, release, slow))
    client.start()
    for _ in range(500):  # until the server has it in progress
        if httpx.get(f"{server.url}/healthz").json()["in_progress"] == 1:
            break
    busy = httpx.post(url, content=path.read_bytes(), headers={"Content-Type": "image/png"})
    for _ in range(500):  # until the server gave up on it (the client is still sending)
        if httpx.get(f"{server.url}/healthz").json()["in_progress"] == 0:
            break
    release.set()
    client.join(15)

    assert "busy" in error_of(busy, 503)
    assert isinstance(slow[0], httpx.Response), slow
    assert "limit of 0.5 s" in error_of(slow[0], 504)
    after = httpx.post(url, content=path.read_bytes(), headers={"Content-Type": "image/png"})
    assert after.status_code == 200


def test_concurrent_requests_each_get_their_own_answer(digit_server, digit_run, predictor):
    images = digit_run.x_test[:24]
    expected = predictor.predict(images).argmax(axis=1)

    def ask(i):
        r = httpx.post(f"{digit_server.url}/api/predict", content=png_bytes(images[i]),
                       headers={"Content-Type": "image/png"}, timeout=30)
        return r.status_code, r.json()["index"], pixels_of(r.json()["input"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(len(images))))

    assert [status for status, _, _ in answers] == [200] * len(images)
    assert [index for _, index, _ in answers] == expected.tolist()
    assert all((seen == images[i]).all() for i, (_, _, seen) in enumerate(answers))


def test_requests_open_no_file_outside_the_python_installation(digit_server, digit):
    """The audit hook sees every open() in the process while the requests run: none may be a
    write, and none a path a request could name (uploads are parsed in memory; Starlette's own
    form parser would spool a 3 MB upload to a temporary file)."""
    path, _ = digit
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200), np.uint8))
    uploads = [png_bytes(big), path.read_bytes()]
    url = f"{digit_server.url}/api"
    for data in uploads:  # once first, so lazy imports are done
        httpx.post(f"{url}/inspect", files={"file": ("x.png", data)}, timeout=60)
    opened, watching = [], threading.Event()

    def hook(event, args):
        if watching.is_set() and event == "open":
            opened.append((str(args[0]), args[1]))
    sys.addaudithook(hook)
    watching.set()
    answers = [httpx.post(f"{url}/{kind}", files={"file": ("x.png", data)}, timeout=60)
               for kind in ("predict", "inspect") for data in uploads]
    watching.clear()

    assert len(uploads[0]) > 1_000_000 and [r.status_code for r in answers] == [200] * 4
    prefixes = (sys.prefix, sys.base_prefix, str(__import__("cnnkit").__path__[0]))
    assert [(p, m) for p, m in opened if not str(p).startswith(prefixes)
            or (isinstance(m, str) and set(m) & set("wax+"))] == []


def test_an_onnx_server_answers_as_torch_and_says_why_it_cannot_look_inside(
        digit_run, serve, digit, tmp_path_factory, predictor):
    from cnnkit.serve.onnx import export_onnx

    path, pixels = digit
    onnx_file = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    export_onnx(digit_run.path, onnx_file, check=False)
    server = serve(create_app(Predictor(onnx_file)))
    r = httpx.post(f"{server.url}/api/predict", content=path.read_bytes(),
                   headers={"Content-Type": "image/png"})
    inspect = httpx.post(f"{server.url}/api/inspect", content=path.read_bytes(),
                         headers={"Content-Type": "image/png"})

    assert r.json()["runtime"] == "onnx" and r.json()["class_name"] == str(LABEL)
    assert np.allclose(r.json()["probabilities"], predictor.predict(pixels), atol=1e-4)
    assert "bare .onnx file" in error_of(inspect, 409)
    card = httpx.get(f"{server.url}/api/model").json()
    assert not card["inspect"] and card["test_accuracy"] == predictor.card()["test_accuracy"]


def test_an_rgb_model_takes_images_and_refuses_drawings(serve):
    server = serve(create_app(Predictor("seed001-example")))  # 24×24×3, 3 classes
    photo = png_bytes(np.random.default_rng(1).integers(0, 255, (50, 70, 3), np.uint8))
    r = httpx.post(f"{server.url}/api/predict", content=photo, headers={"Content-Type": "image/png"})
    drawing = httpx.post(f"{server.url}/api/predict?mode=drawing", content=photo,
                         headers={"Content-Type": "image/png"})
    inspect = httpx.post(f"{server.url}/api/inspect", content=photo,
                         headers={"Content-Type": "image/png"})

    assert pixels_of(r.json()["input"]).shape == (24, 24, 3) and len(r.json()["top_k"]) == 3
    assert "grayscale" in error_of(drawing, 422)
    assert [m["shape"][:2] for m in inspect.json()["feature_maps"]] == [[22, 22], [20, 20]]
    assert not httpx.get(f"{server.url}/api/model").json()["drawing"]


@pytest.fixture(scope="module")
def any_model_server(serve, preset_model):
    """One server whose app is swapped per preset (a server per preset would cost a second each)."""
    from cnnkit.model.presets import PRESETS

    apps = {name: create_app(Predictor(preset_model(name), runtime="torch")) for name in PRESETS}
    current = {"app": apps["seed003-cnn"]}

    async def app(scope, receive, send):
        await current["app"](scope, receive, send)
    server = serve(app)
    return server, apps, current


@pytest.mark.parametrize("preset", sorted(__import__("cnnkit.model.presets",
                                                     fromlist=["PRESETS"]).PRESETS))
def test_every_preset_is_served_with_its_maps(any_model_server, preset):
    server, apps, current = any_model_server
    current["app"] = apps[preset]
    card = httpx.get(f"{server.url}/api/model").json()
    h, w, c = card["input_shape"]
    photo = png_bytes(np.random.default_rng(3).integers(0, 255, (h + 9, w + 5, 3), np.uint8))
    r = httpx.post(f"{server.url}/api/predict", content=photo, headers={"Content-Type": "image/png"})
    inspect = httpx.post(f"{server.url}/api/inspect", content=photo,
                         headers={"Content-Type": "image/png"})

    assert card["name"] == preset and card["drawing"] == (c == 1)
    assert r.status_code == 200 and pixels_of(r.json()["input"]).shape[:2] == (h, w)
    assert inspect.status_code == 200 and inspect.json()["grad_cam"]["gradcam"]
    model = apps[preset].state.predictor.model
    assert [m["layer"] for m in inspect.json()["feature_maps"]] == [
        i.name for i in model.layer_infos() if is_convolution(i.layer)]  # the same choice


GOOD = png_bytes(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))
TYPES = ["image/png", "image/jpeg", "image/gif", "application/json", "multipart/form-data",
         "multipart/form-data; boundary=x", "text/plain", "", "image/webp; q=1"]


def mutated(data: bytes) -> st.SearchStrategy:
    return st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                    max_size=8).map(lambda edits: _edit(data, edits))


def _edit(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for i, v in edits:
        b[i] = v
    return bytes(b)


def bodies() -> st.SearchStrategy:
    raw = st.binary(max_size=512)
    url = st.one_of(raw, mutated(GOOD), st.just(GOOD)).map(data_url)
    json_body = st.one_of(url.map(lambda u: json.dumps({"image": u})),
                          st.text(max_size=80).map(lambda t: json.dumps({"image": t})),
                          st.text(max_size=80)).map(str.encode)
    multipart = st.one_of(raw, mutated(GOOD)).map(
        lambda d: b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"
                  + d + b"\r\n--x--\r\n")
    return st.one_of(raw, mutated(GOOD), json_body, multipart, mutated(bomb_png(9000, 9000)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), content_type=st.sampled_from(TYPES),
       mode=st.sampled_from(["image", "drawing"]))
def test_any_body_is_an_answer_or_a_4xx_never_a_crash(body, content_type, mode):
    limits = Limits(max_upload_bytes=4096, max_pixels=1_000_000)
    try:
        pixels = request_pixels(body, content_type, limits, mode, (28, 28, 1))
    except RequestError as e:
        assert 400 <= e.status < 500 and e.message and "\n" not in e.message
    else:
        assert pixels.shape == (28, 28, 1) and pixels.dtype == np.uint8
