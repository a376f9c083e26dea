"""`cnnkit export --quantize int8|fp16`: a smaller ONNX file, kept only when it is still right.

int8 is onnxruntime's static quantization (QDQ, per-channel int8 weights, uint8 activations),
its ranges calibrated on the model's own training images; fp16 is onnxruntime's float16
converter with float32 kept at the graph's input and output. Both are judged beside the fp32
graph in one process, on the whole test split: test accuracy, file size, one-image latency and
images per second. A drop past `max_drop` points refuses the file: a quantized CNN far less
accurate than its fp32 graph is the failure its users report, with nothing that told them.
A smaller file that runs slower on this CPU is kept, and said so plainly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cnnkit.errors import CnnkitError, one_of

MODES = ("int8", "fp16")
MAX_DROP = 0.5  # test-accuracy points a quantized file may lose against fp32
CALIBRATION = 512  # training images that set int8's activation ranges
ONE_IMAGE_RUNS = 200  # one-image calls timed per graph (the median is quoted)
TIMED_IMAGES = 2048  # at least this many images per throughput figure (a small split repeated)


def check_quantize(mode, max_drop, calibration) -> None:
    """One line for a bad option, before anything is exported."""
    if mode not in MODES:
        raise one_of("quantize", mode, MODES)
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) \
            or not 0 <= max_drop <= 100:
        raise CnnkitError(f"max_drop={max_drop!r} is out of range; valid: test-accuracy points "
                          f"from 0 to 100 (default {MAX_DROP})", "max_drop", max_drop)
    if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1:
        raise CnnkitError(f"calibration={calibration!r} is out of range; valid: a number of "
                          f"training images >= 1 (default {CALIBRATION})",
                          "calibration", calibration)


@dataclass
class Figures:
    """One graph's figures on the test split."""

    bytes: int
    accuracy: float
    one_image_ms: float  # median of ONE_IMAGE_RUNS calls
    images_per_s: float

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "test_accuracy": self.accuracy,
                "one_image_ms": self.one_image_ms, "images_per_s": self.images_per_s}


@dataclass
class QuantReport:
    """fp32 beside the quantized graph; `kept` is False when the gate refused the file."""

    mode: str
    images: int
    calibration: int
    max_drop: float
    fp32: Figures
    quantized: Figures
    top1_agreement: float  # the quantized graph's top-1 against fp32's
    notes: list[str] = field(default_factory=list)

    @property
    def drop(self) -> float:
        """Test-accuracy points lost against fp32 (negative: gained)."""
        return 100 * (self.fp32.accuracy - self.quantized.accuracy)

    @property
    def kept(self) -> bool:
        return self.drop <= self.max_drop + 1e-9

    def text(self) -> str:
        f, q = self.fp32, self.quantized
        rows = [("", "fp32", self.mode),
                ("test accuracy", f"{f.accuracy:.4f}", f"{q.accuracy:.4f}"),
                ("file size", f"{f.bytes / 1024:,.0f} KiB", f"{q.bytes / 1024:,.0f} KiB"),
                ("one image", f"{f.one_image_ms:.3f} ms", f"{q.one_image_ms:.3f} ms"),
                ("images/s", f"{f.images_per_s:,.0f}", f"{q.images_per_s:,.0f}")]
        lines = [f"{self.mode} beside fp32 on {self.images:,} test images (onnxruntime, this "
                 f"CPU{'; calibrated on ' + format(self.calibration, ',') + ' training images' if self.mode == 'int8' else ''}):"]
        lines += [f"  {a:<14}{b:>12}{c:>12}" for a, b, c in rows]
        lines.append(f"  accuracy {0.0 - self.drop:+.2f} points (gate: --max-drop {self.max_drop:g}), "
                     f"top-1 agreement with fp32 {100 * self.top1_agreement:.2f}%")
        return "\n".join(lines + [f"  {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return {"mode": self.mode, "images": self.images, "calibration": self.calibration,
                "max_drop": self.max_drop, "drop_points": self.drop, "kept": self.kept,
                "top1_agreement": self.top1_agreement, "fp32": self.fp32.to_dict(),
                self.mode: self.quantized.to_dict(), "notes": self.notes}


def quantized_bytes(fp32: bytes, mode: str, calibration_images: np.ndarray | None,
                    input_name: str) -> bytes:
    """The fp32 graph's bytes quantized by onnxruntime's own tools; metadata kept."""
    import onnx

    if mode == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return convert_float_to_float16(onnx.load_from_string(fp32),
                                        keep_io_types=True).SerializeToString()
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration_images[i:i + 64]
                           for i in range(0, len(calibration_images), 64))

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="cnnkit-quantize-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        proto = onnx.load(str(out))
    # the pre-processing's own keys would tell a reader nothing about the model
    keep = [(e.key, e.value) for e in proto.metadata_props if not e.key.startswith("onnx.")]
    del proto.metadata_props[:]
    for key, value in keep:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def with_metadata(data: bytes, **values) -> bytes:
    """The graph with metadata keys set (the quantized file's own accuracy and mode)."""
    import onnx

    proto = onnx.load_from_string(data)
    props = {e.key: e for e in proto.metadata_props}
    for key, value in values.items():
        entry = props.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return proto.SerializeToString()


def _figures(sessions, datas, x: np.ndarray, y: np.ndarray, rounds: int = 3):
    """[(Figures, probabilities)] of each (session, meta) on the test images, timed in turns
    (graph A, graph B, A, B, ...) so that a busy machine slows both alike; medians quoted."""
    from cnnkit.serve.onnx import run_session

    probs = [run_session(session, x, meta) for session, meta in sessions]  # (N, K) each
    timed = np.resize(x, (max(len(x), TIMED_IMAGES), *x.shape[1:]))  # a small split, repeated
    speed, one = [[] for _ in sessions], [[] for _ in sessions]
    for _ in range(rounds):
        for k, (session, meta) in enumerate(sessions):
            t0 = time.perf_counter()
            run_session(session, timed, meta)
            speed[k].append(len(timed) / (time.perf_counter() - t0))
            for i in range(min(ONE_IMAGE_RUNS // rounds, len(x))):
                t = time.perf_counter()
                run_session(session, x[i:i + 1], meta)
                one[k].append(time.perf_counter() - t)
    return [(Figures(len(d), float((p.argmax(1) == y).mean()), 1e3 * float(np.median(o)),
                     float(np.median(s))), p)
            for d, p, o, s in zip(datas, probs, one, speed)]


def judge(mode: str, fp32: bytes, quantized: bytes, x: np.ndarray, y: np.ndarray,
          max_drop: float, calibration: int, threads: int | None, where: str) -> QuantReport:
    """Both graphs on the same images, in this process, one after the other."""
    from cnnkit.serve.onnx import _session, read_metadata

    sessions = []
    for data in (fp32, quantized):
        session = _session(data, threads, where)
        props = dict(session.get_modelmeta().custom_metadata_map)
        sessions.append((session, read_metadata(props, session, where)))
    (f, pf), (q, pq) = _figures(sessions, (fp32, quantized), x, y)
    report = QuantReport(mode, len(x), calibration if mode == "int8" else 0, float(max_drop),
                         f, q, float((pf.argmax(1) == pq.argmax(1)).mean()))
    if q.bytes >= f.bytes:
        report.notes.append(f"the {mode} file is no smaller than fp32's on this model")
    slower = [what for what, a, b in (("one image", q.one_image_ms, f.one_image_ms),
                                      ("images/s", f.images_per_s, q.images_per_s)) if a > b]
    if slower:
        report.notes.append(f"{mode} is slower than fp32 on this CPU ({' and '.join(slower)}): "
                            f"keep it for its size, or export fp32 for speed")
    return report


def calibration_images(model, source, n: int) -> np.ndarray:
    """`n` training images at the model's input, drawn with a fixed seed: the run's own
    training split (never its held-out test images), else the dataset's train split."""
    import torch

    from cnnkit.runs.evaluate import split_data

    run_dir, dataset, data_dir = source
    _, _, x, _ = split_data(model.name, model.input_shape, model.dataset, run_dir, dataset,
                            data_dir, "train")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
    return x.index_select(0, pick.sort().values).numpy()


def quantize_checked(fp32: bytes, mode: str, model, source, test, max_drop: float,
                     calibration: int, threads: int | None, report) -> bytes:
    """The quantized graph's bytes, judged on the test images `test` (where, x, y) and put on
    `report.quantized`; one CnnkitError line (the report on it) when the gate refuses it."""
    import json

    where, x, y = test
    if y is None:
        raise CnnkitError(f"{report.path}: --quantize judges the smaller graph on labelled test "
                          "images, and the model records no dataset; name one (dataset=..., "
                          "--dataset)")
    images = calibration_images(model, source, calibration) if mode == "int8" else None
    from cnnkit.serve.onnx import INPUT_NAME

    data = quantized_bytes(fp32, mode, images, INPUT_NAME)
    y = np.asarray(y)
    judged = judge(mode, fp32, data, x.numpy(), y, max_drop,
                   0 if images is None else len(images), threads, str(report.path))
    report.quantized = judged
    if not judged.kept:
        err = CnnkitError(f"{report.path}: {mode} test accuracy {judged.quantized.accuracy:.4f} "
                          f"is {judged.drop:.2f} points below fp32's {judged.fp32.accuracy:.4f} "
                          f"on {where} (max_drop {max_drop:g}); nothing written", "max_drop",
                          max_drop)
        err.report = report
        raise err
    accuracy = judged.quantized.accuracy if source[0] is not None else None
    data = with_metadata(data, quantized=mode, test_accuracy=json.dumps(accuracy))
    judged.quantized.bytes = report.bytes = len(data)  # the file as written, metadata and all
    return data
