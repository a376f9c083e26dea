"""TensorBoard event files, written without TensorFlow or the tensorboard package.

An event file is a TFRecord stream of `Event` protocol buffers. Scalars, images and the
hparams plugin's records need only a handful of protobuf fields, so they are encoded by hand
here (scalars are decoded again by `read_scalars`; the tests read everything back with
TensorBoard's own reader). The fields, numbered as in TensorBoard's .proto files:

    Event    { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary  { repeated Value value = 1; }
    Value    { string tag = 1; float simple_value = 2; Image image = 4; TensorProto tensor = 8;
               SummaryMetadata metadata = 9; }
    Image    { int32 height = 1; int32 width = 2; int32 colorspace = 3;
               bytes encoded_image_string = 4; }   (a PNG file's bytes)
    SummaryMetadata { PluginData plugin_data = 1 { string plugin_name = 1; bytes content = 2; } }

The hparams plugin's content is an HParamsPluginData (plugins/hparams/plugin_data.proto):

    HParamsPluginData { int32 version = 1; SessionStartInfo session_start_info = 3;
                        SessionEndInfo session_end_info = 4; }
    SessionStartInfo  { map<string, google.protobuf.Value> hparams = 1;
                        double start_time_secs = 5; }
    SessionEndInfo    { Status status = 1; double end_time_secs = 2; }
    google.protobuf.Value { double number_value = 2; string string_value = 3; bool bool_value = 4; }

TFRecord framing: uint64 length, masked CRC-32C of the length, payload, masked CRC-32C of it.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf does
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint((number << 3) | wire)
    if wire == 2:  # length-delimited
        return key + _varint(len(payload)) + payload
    return key + payload


def _event(step: int, wall_time: float, *, version: str | None = None,
           values: list[bytes] = ()) -> bytes:
    msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if version is not None:
        msg += _field(3, 2, version.encode())
    if values:
        msg += _field(5, 2, b"".join(_field(1, 2, v) for v in values))
    return msg


def _scalar_value(tag: str, value: float) -> bytes:
    return _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))


# PNG colour type (IHDR byte 25) -> Summary.Image colorspace: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
_COLORSPACE = {0: 1, 4: 2, 2: 3, 3: 3, 6: 4}


def _image_value(tag: str, png: bytes) -> bytes:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("add_image takes PNG bytes")
    width, height = struct.unpack(">II", png[16:24])
    image = (_field(1, 0, _varint(height)) + _field(2, 0, _varint(width))
             + _field(3, 0, _varint(_COLORSPACE[png[25]])) + _field(4, 2, png))
    return _field(1, 2, tag.encode()) + _field(4, 2, image)


# A plugin's record carries its data in the metadata; the tensor is a placeholder, the empty
# float vector TensorBoard's own hparams summaries use: TensorProto { dtype: DT_FLOAT, shape: [0] }.
_NULL_TENSOR = _field(1, 0, _varint(1)) + _field(2, 2, _field(2, 2, b""))
_STATUS = {"unknown": 0, "success": 1, "failure": 2, "running": 3}


def _plugin_value(tag: str, plugin: str, content: bytes) -> bytes:
    metadata = _field(1, 2, _field(1, 2, plugin.encode()) + _field(2, 2, content))
    return _field(1, 2, tag.encode()) + _field(8, 2, _NULL_TENSOR) + _field(9, 2, metadata)


def _protobuf_value(v) -> bytes:
    """A google.protobuf.Value: bool, number or string (what the hparams view can show)."""
    if isinstance(v, bool):
        return _field(4, 0, _varint(int(v)))
    if isinstance(v, (int, float)):
        return _field(2, 1, struct.pack("<d", float(v)))
    return _field(3, 2, str(v).encode())


def _record(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return (header + struct.pack("<I", _masked_crc(header)) + payload
            + struct.pack("<I", _masked_crc(payload)))


class EventWriter:
    """Appends events to a new event file in `log_dir`; each write is flushed and
    fsynced so a killed run keeps every epoch written so far (TensorBoard skips a torn tail)."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = self.log_dir / name
        self._write(_event(0, time.time(), version="brain.Event:2"))

    def _write(self, payload: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(_record(payload))
            f.flush()
            os.fsync(f.fileno())

    def add_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self._write(_event(step, time.time(),
                           values=[_scalar_value(k, float(v)) for k, v in scalars.items()]))

    def add_image(self, step: int, tag: str, png: bytes) -> None:
        """One PNG under `tag` in TensorBoard's IMAGES tab (its size read from the PNG)."""
        self._write(_event(step, time.time(), values=[_image_value(tag, png)]))

    def add_hparams(self, hparams: dict, start_time: float | None = None) -> None:
        """The run's hyper-parameters for the HPARAMS tab: this directory becomes a session,
        and the scalars of its subdirectories (train/, validation/) its metrics. Values must
        be bool, int, float or str."""
        # a map field is a repeated entry message { key = 1; value = 2; }
        start = b"".join(_field(1, 2, _field(1, 2, str(k).encode())
                                + _field(2, 2, _protobuf_value(v)))
                         for k, v in hparams.items())
        start += _field(5, 1, struct.pack("<d", time.time() if start_time is None else start_time))
        self._write(_event(0, time.time(), values=[_plugin_value(
            "_hparams_/session_start_info", "hparams", _field(3, 2, start))]))

    def add_session_end(self, status: str = "success") -> None:
        """Closes the hparams session: `status` is success, failure, running or unknown."""
        end = _field(1, 0, _varint(_STATUS[status]))
        end += _field(2, 1, struct.pack("<d", time.time()))
        self._write(_event(0, time.time(), values=[_plugin_value(
            "_hparams_/session_end_info", "hparams", _field(4, 2, end))]))


# --- reading back (tests, reports) ---------------------------------------------------------------
def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def read_records(path) -> list[bytes]:
    """Payloads of a TFRecord file, checking both CRCs of every record."""
    data, out, i = Path(path).read_bytes(), [], 0
    while i + 12 <= len(data):
        header = data[i:i + 8]
        (n,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", data[i + 8:i + 12])
        payload = data[i + 12:i + 12 + n]
        if crc != _masked_crc(header) or len(payload) < n:
            break  # a torn tail from a killed writer
        (pcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        if pcrc != _masked_crc(payload):
            break
        out.append(payload)
        i += 16 + n
    return out


def read_scalars(path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from one event file."""
    result: dict[str, list[tuple[int, float]]] = {}
    for payload in read_records(path):
        step, summary = 0, None
        for number, _, value in _fields(payload):
            if number == 2:
                step = value
            elif number == 5:
                summary = value
        if summary is None:
            continue
        for number, _, value in _fields(summary):
            if number != 1:
                continue
            tag, scalar = "", None
            for n, _, v in _fields(value):
                if n == 1:
                    tag = v.decode()
                elif n == 2:
                    (scalar,) = struct.unpack("<f", v)
            if scalar is not None:  # images and plugin records are not scalars
                result.setdefault(tag, []).append((step, scalar))
    return result
