"""What a request to the server carries, read into the pixels the model sees, within limits.

    pixels = request_pixels(body, content_type, limits, mode, input_shape)   # uint8 (H, W, C)

A body is one of
- multipart/form-data with the image in the field `file` (a browser's file picker, `curl -F`);
- application/json `{"image": "data:image/png;base64,..."}` (a canvas's `toDataURL()`);
- the image itself, with its own type as the request's (`image/png`, `image/jpeg`, ...).
Everything is read in memory: no request reads or writes a file (Starlette's form parser
would spool an upload over 1 MB to a temporary file, so multipart is parsed here).

Every way a body can be wrong is a `RequestError` carrying the HTTP status and one line:
400 malformed, 413 too large (bytes, or pixels: a decompression bomb is refused from its
header, before a pixel is decoded), 415 not an image type cnnkit reads, 422 an image that does
not decode or does not fit the model. `tests/serve/test_api.py` fuzzes this module.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass

import numpy as np

from cnnkit.errors import CnnkitError, shown

MODES = ("image", "drawing")
IMAGE_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "image/webp",
               "image/tiff", "image/x-ms-bmp"}
BODY_TYPES = "multipart/form-data (field 'file'), application/json ({\"image\": a data URL}) " \
             "or an image body (image/png, image/jpeg, ...)"
FILE_FIELDS = (b"file", b"image")


class RequestError(Exception):
    """A request the server refuses: `status` (4xx, 5xx) and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message.replace("\n", " ")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (`cnnkit serve --help` shows the same)."""

    max_upload_bytes: int = 5 * 2**20     # the request body: 5 MiB
    max_pixels: int = 4096 * 4096         # width × height of an uploaded image (16.8 M)
    request_seconds: float = 10.0         # body read, decode, model: all of it
    concurrency: int = 2                  # requests computed at once (threads)
    queue: int = 64                       # requests waiting beyond those, then 503
    # the connections (cnnkit.serve.connections): what a client may hold open, and how long
    header_seconds: float = 10.0          # a request head, from connect or the last answer
    keep_alive_seconds: float = 5.0       # an idle connection after an answer
    max_connections: int = 1000           # open at once, then 503 and closed
    max_connections_per_client: int = 64  # from one address, then 503 and closed
    max_header_bytes: int = 16384         # a request head, then 431

    def check(self) -> "Limits":
        for name, least in (("max_upload_bytes", 1), ("max_pixels", 1), ("concurrency", 1),
                            ("queue", 0), ("max_connections", 1),
                            ("max_connections_per_client", 1), ("max_header_bytes", 1024)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise CnnkitError(f"{name}={shown(value)} is out of range; valid: an integer "
                                  f">= {least}", name, value)
        for name in ("request_seconds", "header_seconds", "keep_alive_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < float("inf"):
                raise CnnkitError(f"{name}={shown(value)} is out of range; valid: a number of "
                                  "seconds > 0", name, value)
        return self


# -- the body -----------------------------------------------------------------------------------
def image_bytes(body: bytes, content_type: str, limits: Limits) -> bytes:
    """The encoded image a request body carries (module docstring)."""
    from python_multipart.multipart import parse_options_header

    if len(body) > limits.max_upload_bytes:
        raise too_large(len(body), limits)
    kind, options = parse_options_header(content_type or "")
    kind = kind.decode("latin-1").lower()
    if kind == "multipart/form-data":
        data = _multipart_file(body, options.get(b"boundary"))
    elif kind == "application/json":
        data = _json_image(body)
    elif kind in IMAGE_TYPES:
        data = body
    else:
        raise RequestError(415, f"unsupported content type {shown(kind or content_type)}; "
                                f"valid: {BODY_TYPES}")
    if not data:
        raise RequestError(400, "the image is empty (0 bytes)")
    return data


def too_large(size: int, limits: Limits) -> RequestError:
    return RequestError(413, f"the upload is over the limit of {limits.max_upload_bytes:,} "
                             f"bytes{f' ({size:,} bytes)' if size else ''}")


def data_url_bytes(url) -> bytes:
    """The bytes of a `data:image/...;base64,...` URL."""
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        raise RequestError(400, f"'image' must be a data URL (data:image/png;base64,...); "
                                f"received {shown(url)[:60]}")
    head, payload = url[5:].split(",", 1)
    parts = [p.strip().lower() for p in head.split(";")]
    if not parts[0].startswith("image/"):
        raise RequestError(415, f"the data URL holds {shown(parts[0] or 'text/plain')}, not an "
                                f"image; valid: {', '.join(sorted(IMAGE_TYPES))}")
    if "base64" not in parts[1:]:
        raise RequestError(400, "the data URL is not base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "the data URL's base64 is malformed") from None


def _json_image(body: bytes) -> bytes:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: [[[[...]]]] nested too deep
        raise RequestError(400, "the body is not valid JSON; valid: {\"image\": "
                                "\"data:image/png;base64,...\"}") from None
    if not isinstance(doc, dict) or "image" not in doc:
        raise RequestError(400, "the JSON body has no 'image'; valid: {\"image\": "
                                "\"data:image/png;base64,...\"}")
    return data_url_bytes(doc["image"])


def _multipart_file(body: bytes, boundary: bytes | None) -> bytes:
    """The first part named `file` (or `image`) of a multipart body, parsed in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    if not boundary:
        raise RequestError(400, "multipart/form-data without a boundary")
    parts: list[dict] = []
    header: list[bytes] = [b"", b""]

    def begin():
        parts.append({"headers": {}, "data": bytearray()})

    def field(data, start, end):
        header[0] += data[start:end]

    def value(data, start, end):
        header[1] += data[start:end]

    def header_end():
        parts[-1]["headers"][header[0].lower()] = header[1]
        header[0], header[1] = b"", b""

    def data(data, start, end):
        parts[-1]["data"] += data[start:end]

    callbacks = {"on_part_begin": begin, "on_header_field": field, "on_header_value": value,
                 "on_header_end": header_end, "on_part_data": data}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as e:  # noqa: BLE001 - python-multipart raises several kinds, all "malformed"
        raise RequestError(400, f"malformed multipart body: {str(e)[:120]}") from None
    for part in parts:
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if options.get(b"name") in FILE_FIELDS:
            return bytes(part["data"])
    raise RequestError(400, "the multipart body has no field 'file' holding the image")


# -- the image ----------------------------------------------------------------------------------
def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """uint8 (H, W, C) of an encoded image at its own size (C 1, 3 or 4), upright by EXIF."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    # the formats every image cnnkit reads is limited to (cnnkit.data.images.pillow_open)
    from cnnkit.data.images import DECODE_ERRORS, FORMATS, decode, pillow_open, upright

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = pillow_open(io.BytesIO(data))
            w, h = img.size  # from the header: nothing decoded yet
            if w * h > limits.max_pixels:
                raise RequestError(413, f"the image is {w:,}×{h:,} = {w * h:,} pixels, over the "
                                        f"limit of {limits.max_pixels:,}")
            if w * h == 0:
                raise RequestError(422, f"the image is {w}×{h}: it holds no pixels")
            img.load()  # the first frame of an animation
            return decode(upright(img))
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise RequestError(413, f"the image is over the limit of {limits.max_pixels:,} pixels "
                                f"({str(e)[:120]})") from None
    except UnidentifiedImageError:
        raise RequestError(415, f"not an image cnnkit reads; valid: {', '.join(FORMATS)}") from None
    except (*DECODE_ERRORS, MemoryError) as e:
        raise RequestError(422, f"cannot decode the image: {str(e)[:160]}") from None


def model_pixels(pixels: np.ndarray, mode: str, input_shape) -> np.ndarray:
    """uint8 (H, W, C) at the model's input shape: `mode` 'image' by the input contract (as
    `cnnkit predict` reads a file), 'drawing' by MNIST's preparation (cnnkit.serve.drawing)."""
    import torch

    from cnnkit.data import convert_images
    from cnnkit.model.inputs import to_pixels
    from cnnkit.serve.drawing import prepare_drawing

    h, w, c = input_shape
    if mode == "drawing":
        if c != 1:
            raise RequestError(422, f"mode 'drawing' prepares a grayscale digit, and this model "
                                    f"takes {c}-channel images; valid: mode 'image'")
        gray = convert_images(torch.from_numpy(pixels)[None], channels=1)[0, :, :, 0].numpy()
        return prepare_drawing(gray, (h, w))[:, :, None]
    if mode != "image":
        raise RequestError(400, f"unknown mode {shown(mode)}; valid: {', '.join(MODES)}")
    try:
        return to_pixels(pixels, input_shape)[0][0].numpy()
    except CnnkitError as e:
        raise RequestError(422, str(e)) from None


def request_pixels(body: bytes, content_type: str, limits: Limits, mode: str,
                   input_shape) -> np.ndarray:
    """The model's input, uint8 (H, W, C), from a request body; RequestError if it can't be."""
    return model_pixels(decode_image(image_bytes(body, content_type, limits), limits), mode,
                        input_shape)
