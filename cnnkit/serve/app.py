"""The web demo and its JSON API, as a FastAPI app: `cnnkit serve` runs it on uvicorn.

    app = create_app(Predictor("runs/fashion"))        # then uvicorn.run(app, port=8000)

Routes: `/` the page (its files in `page/`, served from the package: no CDN, works offline),
`POST /api/predict`, `POST /api/inspect`, `GET /api/model`, `GET /healthz`, `/docs` (a page
of cnnkit's own that renders `/openapi.json`; FastAPI's Swagger UI would load from a CDN).

Requests are computed on a pool of `limits.concurrency` threads, with at most `limits.queue`
more waiting (then 503), each within `limits.request_seconds` from its first byte read to its
answer (then 504). Every refusal is JSON `{"error": "one line"}` with a 4xx/5xx status, and
the server keeps serving. No request names a path: bodies are decoded in memory. Served by
`cnnkit.serve.connections.server_config(app)`, the connections are bounded too (count, per
client, time to send a request head) and uvicorn's own errors are the same JSON.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from cnnkit.errors import CnnkitError
from cnnkit.serve.connections import HostCheck
from cnnkit.serve.uploads import BODY_TYPES, Limits, RequestError, request_pixels, too_large

log = logging.getLogger("cnnkit.serve")
PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
              "docs.html": "text/html", "docs.js": "text/javascript",
              "bars.js": "text/javascript"}
# The page may load only what this server serves (and the data: URLs the API returns).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# -- what the API answers (documented in /openapi.json) -----------------------------------------
class TopClass(BaseModel):
    index: int
    class_: str = Field(alias="class")
    probability: float


class Prediction(BaseModel):
    top_k: list[TopClass]
    probabilities: list[float]
    index: int
    class_name: str
    input: str
    input_shape: list[int]
    mode: str
    runtime: str
    latency_ms: float
    model_ms: float


class FeatureMaps(BaseModel):
    layer: str
    shape: list[int]
    channels_shown: int
    image: str


class Inspection(BaseModel):
    index: int
    class_name: str
    input: str
    feature_maps: list[FeatureMaps]
    grad_cam: dict
    latency_ms: float


class Error(BaseModel):
    error: str


ERRORS = {s: {"model": Error, "description": d} for s, d in {
    400: "malformed body", 409: "no PyTorch model to look inside (a bare .onnx file)",
    413: "upload over the byte or pixel limit", 415: "not an image type cnnkit reads",
    422: "an image that does not decode or fit the model", 503: "too many requests waiting",
    504: "over the request time limit"}.items()}
IMAGE_BODY = {"requestBody": {"required": True, "description": BODY_TYPES, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "example": "data:image/png;base64,iVBORw0KGgo..."}}}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}
MODE_HELP = ("'image': brought to the model's input as `cnnkit predict` reads a file; "
             "'drawing': MNIST's preparation (ink box scaled into 20×20, centred by centre of "
             "mass in 28×28), for grayscale models")


def create_app(predictor, limits: Limits | None = None, top_k: int = 5) -> FastAPI:
    """The app serving `predictor` (a cnnkit.serve.predictor.Predictor) within `limits`."""
    limits = (limits or Limits()).check()
    pool = concurrent.futures.ThreadPoolExecutor(limits.concurrency, "cnnkit-serve")
    waiting = [0]  # requests admitted and not answered (event loop only: no lock needed)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"cnnkit serve: {predictor.name}", docs_url=None, redoc_url=None,
                  lifespan=lifespan, description="Class probabilities, feature maps and "
                  "Grad-CAM for images, from a cnnkit model. Errors are JSON {\"error\": "
                  "\"one line\"}.", version=_version())
    app.state.predictor, app.state.limits = predictor, limits
    app.add_middleware(HostCheck)  # bound to loopback: only loopback names (DNS rebinding)
    card = {**predictor.card(), "drawing": predictor.input_shape[2] == 1,
            "inspect": predictor.model is not None, "top_k": top_k,
            "limits": {"max_upload_bytes": limits.max_upload_bytes,
                       "max_pixels": limits.max_pixels,
                       "request_seconds": limits.request_seconds}}

    async def answer(request: Request, work) -> JSONResponse:
        """Read the body and run `work(body, content_type)` on the pool, within the limits."""
        if waiting[0] >= limits.concurrency + limits.queue:
            raise RequestError(503, f"the server is busy ({waiting[0]} requests in progress); "
                                    "try again")
        waiting[0] += 1
        try:
            start = time.perf_counter()
            body = await asyncio.wait_for(_read_body(request, limits), limits.request_seconds)
            left = limits.request_seconds - (time.perf_counter() - start)
            loop = asyncio.get_running_loop()
            job = loop.run_in_executor(pool, work, body, request.headers.get("content-type", ""))
            result = await asyncio.wait_for(job, max(left, 0))  # a queued job is cancelled
            result["latency_ms"] = round((time.perf_counter() - start) * 1000, 3)
            return JSONResponse(result)
        except ClientDisconnect:  # gone mid-upload (or the server is stopping): no one to tell
            raise RequestError(400, "the client closed the connection mid-upload") from None
        except TimeoutError:
            raise RequestError(504, f"the request took longer than the limit of "
                                    f"{limits.request_seconds:g} s") from None
        finally:
            waiting[0] -= 1

    def pixels_of(body: bytes, content_type: str, mode: str):
        return request_pixels(body, content_type, limits, mode, predictor.input_shape)

    # -- the API ------------------------------------------------------------------------------
    @app.post("/api/predict", response_model=Prediction, responses=ERRORS,
              openapi_extra=IMAGE_BODY, summary="Class probabilities of one image")
    async def predict(request: Request, mode: Literal["image", "drawing"] = Query(
            "image", description=MODE_HELP), k: int = Query(
            top_k, ge=1, le=1000, alias="top_k", description="how many classes in top_k")):
        """The top-k classes, every class's probability, the exact input the model saw (a PNG
        data URL, at the model's input size), and the time taken in the server."""
        def work(body, content_type):
            from cnnkit.serve.views import data_url

            pixels = pixels_of(body, content_type, mode)  # uint8 (H, W, C)
            t0 = time.perf_counter()
            probs = predictor.predict(pixels)  # (K,)
            model_ms = (time.perf_counter() - t0) * 1000
            top = _top(probs, predictor.class_names, k)
            return {"top_k": top, "probabilities": [float(p) for p in probs],
                    "index": top[0]["index"], "class_name": top[0]["class"],
                    "input": data_url(pixels), "input_shape": list(pixels.shape), "mode": mode,
                    "runtime": predictor.runtime, "model_ms": round(model_ms, 3)}
        return await answer(request, work)

    @app.post("/api/inspect", response_model=Inspection, responses=ERRORS,
              openapi_extra=IMAGE_BODY, summary="Feature maps and Grad-CAM of one image")
    async def inspect(request: Request, mode: Literal["image", "drawing"] = Query(
            "image", description=MODE_HELP)):
        """Each Conv2D layer's feature maps (one tile per channel, one colour scale per layer)
        and Grad-CAM / HiResCAM of the predicted class over the input, as PNG data URLs."""
        if predictor.model is None:
            raise RequestError(409, "feature maps and Grad-CAM need the PyTorch model, and this "
                                    "server runs a bare .onnx file; serve the saved model or run "
                                    "it was exported from")
        return await answer(request, lambda body, ctype: _inspect(
            predictor.model, pixels_of(body, ctype, mode)))

    @app.get("/api/model", summary="The model's card")
    async def model_card() -> dict:
        """Name, summary, input shape (H, W, C), classes, test accuracy of its run, runtime,
        whether the page offers a drawing canvas, and the server's limits."""
        return card

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        """'ok' while the server answers, with the requests it is computing or reading now."""
        return {"status": "ok", "model": predictor.name, "runtime": predictor.runtime,
                "in_progress": waiting[0]}

    # -- the page -----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index():
        return _page_file("index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return _page_file("docs.html")

    @app.get("/page/{name}", include_in_schema=False)
    async def page_file(name: str):
        return _page_file(name)

    # -- errors: one JSON line each -----------------------------------------------------------
    @app.exception_handler(RequestError)
    async def refused(request, e: RequestError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(CnnkitError)
    async def user_error(request, e: CnnkitError):
        return JSONResponse({"error": str(e).replace("\n", " ")}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}".strip(": ")},
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request, e: Exception):
        log.exception("cnnkit serve: internal error on %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(e).__name__}"}, status_code=500)

    return app


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The whole body, refused (413) as soon as it passes the limit, Content-Length or not."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise too_large(int(declared), limits)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_upload_bytes:
            raise too_large(0, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def _top(probs, class_names: list[str], k: int) -> list[dict]:
    import numpy as np

    order = np.argsort(-probs, kind="stable")[:k]  # ties: the lower index, as Predictor.top_k
    return [{"index": int(i), "class": class_names[i], "probability": float(probs[i])}
            for i in order]


def _inspect(model, pixels) -> dict:
    """What `/api/inspect` answers for uint8 pixels (H, W, C) at the model's input."""
    from cnnkit.look.inside import conv_layer_names, feature_maps, grad_cam
    from cnnkit.serve.views import cam_picture, data_url, feature_map_picture

    convs = conv_layer_names(model)
    maps = feature_maps(model, pixels, convs) if convs else {}
    pictures = []
    for name, fmap in maps.items():
        image, shown = feature_map_picture(fmap)
        pictures.append({"layer": name, "shape": list(fmap.shape), "channels_shown": shown,
                         "image": image})
    cam = {"layer": None, "gradcam": None, "hirescam": None, "note": None}
    index = None
    if convs:
        heat, index = grad_cam(model, pixels, layer=convs[-1])
        hires, _ = grad_cam(model, pixels, index, convs[-1], method="hirescam")
        cam.update(layer=convs[-1], gradcam=cam_picture(pixels, heat),
                   hirescam=cam_picture(pixels, hires))
        if heat.max() <= 0:
            cam["note"] = (f"Grad-CAM is 0 everywhere: no position of {convs[-1]} speaks for "
                           "this class once its gradients are averaged; HiResCAM shows what "
                           "the score used")
    else:
        cam["note"] = "the model has no Conv2D layer: no feature maps or Grad-CAM"
    if index is None:
        index = int(model.predict(pixels).argmax())
    names = model.class_names or [str(i) for i in range(index + 1)]
    return {"index": index, "class_name": names[index], "input": data_url(pixels),
            "feature_maps": pictures, "grad_cam": cam}


def _page_file(name: str) -> Response:
    if name not in PAGE_FILES:  # a fixed list: no path from a request reaches the disk
        raise StarletteHTTPException(404, f"no page file {name[:80]!r}")
    text = resources.files("cnnkit.serve").joinpath("page", name).read_bytes()
    cls = HTMLResponse if name.endswith(".html") else Response
    return cls(text, media_type=PAGE_FILES[name],
               headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
                        "X-Content-Type-Options": "nosniff"})


def _version() -> str:
    from cnnkit import __version__

    return __version__
