"""ONNX export with its own parity check, and the onnxruntime sessions the Predictor runs.

    report = cnnkit.export_onnx("runs/fashion", "fashion.onnx")
    print(report.text())

The graph takes what users hold: uint8 pixels (N, H, W, C), 0..255, at the model's input
shape, and returns the output contract's class probabilities (N, K), float32. The model's
preprocessing (pixels / 255, or standardized by the training set's mean and std) and its
test-time flip run inside the graph, traced from the same `network_input` and `Net.forward`
that training and `predict` use, so a user with only onnxruntime needs no cnnkit code:

    sess = onnxruntime.InferenceSession("fashion.onnx")
    meta = sess.get_modelmeta().custom_metadata_map    # class_names, input_shape, ...
    probs = sess.run(None, {"pixels": images_uint8})[0]

The metadata (`metadata_props`, strings; lists and mappings as JSON) carries: format,
cnnkit_version, name, class_names, input_shape, input (what the graph takes), output,
preprocessing (the model's own, for reference: it is already inside), test_time_flip,
output_activation, dataset, test_accuracy, batch, summary.

Exporter: the TorchScript one (`torch.onnx.export(..., dynamo=False)`) by default. Both it
and the dynamo exporter give every preset's probabilities within 1e-7 of PyTorch's (flips and
batch norm included); the TorchScript one exports many times faster than dynamo (which
`Predictor(runtime="onnx")` would pay on every start; bench/README.md), writes opsets 10-20
where dynamo writes 18 and up (older onnxruntimes load the default 17), and logs nothing. PyTorch has
deprecated it, so `exporter="dynamo"` is one argument away (`--exporter dynamo`) and tested.

Parity (`cnnkit.serve.parity`): every export runs the graph on onnxruntime beside PyTorch on
the model's test split (a run's own; all 10,000 images for the MNIST family), or 1,000 random
images when the model records no dataset, plus all-black, all-white and noise images, and
fails, writing nothing, past `tolerance` in max |Δp| or on a top-1 disagreement.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnkit.errors import CnnkitError, clipped, one_of, out_of_range, printable

if TYPE_CHECKING:
    from cnnkit.serve.parity import ExportReport

FORMAT = "cnnkit.onnx/1"
INPUT_NAME, OUTPUT_NAME = "pixels", "probabilities"
BATCHES = ("dynamic", "1")
EXPORTERS = ("torchscript", "dynamo")
OPSETS = {"torchscript": (10, 20), "dynamo": (18, 23)}  # 10: Slice with step -1 (the flip)
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
TOLERANCE = 1e-4  # max |Δp| export allows (cnnkit.serve.parity)
# Images per onnxruntime call. 100 and 1,000 are as fast (bench/bench_infer.py, figures in
# bench/README.md), and 100 keeps the activations 10x smaller (9 MB for seed003-cnn's first
# conv, against 86 MB).
ORT_BATCH = 100


# -- the graph ----------------------------------------------------------------------------------
def _graph_module(model):
    """uint8 (N, H, W, C) -> probabilities (N, K): the model's own preprocessing, forward pass
    (test-time flip included) and output contract, as one torch module to trace."""
    import torch

    from cnnkit.model.predict import pixel_probabilities

    class PixelsToProbabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model.net

        def forward(self, pixels):
            return pixel_probabilities(model, pixels)

    return PixelsToProbabilities().eval()


def check_options(opset, batch, exporter, tolerance=TOLERANCE) -> int:
    """The opset to use; a CnnkitError for a bad option, before anything loads."""
    if exporter not in EXPORTERS:
        raise one_of("exporter", exporter, EXPORTERS)
    if str(batch) not in BATCHES:
        raise one_of("batch", batch, BATCHES)
    lo, hi = OPSETS[exporter]
    if opset is None:
        opset = DEFAULT_OPSET[exporter]
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        raise out_of_range("opset", opset, f"an integer {lo}..{hi} for the {exporter} exporter")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise out_of_range("tolerance", tolerance, "a number >= 0")
    return opset


def model_bytes(model, opset: int | None = None, batch: str = "dynamic",
                exporter: str = "torchscript", metadata: dict | None = None) -> bytes:
    """The model as a serialized ONNX graph, metadata included. Without metadata, from the
    TorchScript exporter, `onnx` is never imported: its import (ml_dtypes) takes longer than
    the export and the session together (bench/README.md)."""
    import io

    import torch

    opset = check_options(opset, batch, exporter)
    model.check_classifier()
    model.net.eval()  # batch norm on its running statistics, dropout off, flips on
    h, w, c = model._require_input()
    graph = _graph_module(model)
    example = torch.zeros((1 if str(batch) == "1" else 2, h, w, c), dtype=torch.uint8)
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME],
             "opset_version": opset}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if exporter == "torchscript":
            buf = io.BytesIO()
            dynamic = ({INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                       if str(batch) == "dynamic" else None)
            torch.onnx.export(graph, (example,), buf, dynamo=False, dynamic_axes=dynamic,
                              **names)
            if not metadata:
                return buf.getvalue()
            import onnx

            proto = onnx.load_from_string(buf.getvalue())
        else:
            proto = _dynamo_export(graph, example, batch, names)
    proto.producer_name, proto.producer_version = "cnnkit", _version()
    proto.doc_string = (f"cnnkit model {model.name!r}: uint8 pixels (N, {h}, {w}, {c}) -> class "
                        "probabilities (N, K); see metadata_props")
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _dynamo_export(graph, example, batch, names):
    import logging

    import torch

    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [log.level for log in quiet]
    for log in quiet:  # it logs a line per torchvision op it cannot find, and more
        log.setLevel(logging.ERROR)
    try:
        dims = ({0: torch.export.Dim("batch", min=1)},) if str(batch) == "dynamic" else None
        program = torch.onnx.export(graph, (example,), dynamo=True, dynamic_shapes=dims,
                                    verbose=False, **names)
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    return program.model_proto


def _version() -> str:
    from cnnkit import __version__

    return __version__


def model_metadata(model, batch: str, class_names: list[str], test_accuracy=None) -> dict:
    """metadata_props for a model's graph: strings, JSON for lists and mappings."""
    from cnnkit.model.summary import format_summary

    h, w, c = model._require_input()
    meta = {
        "format": FORMAT, "cnnkit_version": _version(), "name": model.name,
        "class_names": json.dumps(class_names), "input_shape": json.dumps([h, w, c]),
        "input": f"{INPUT_NAME}: uint8 (N, {h}, {w}, {c}), pixels 0..255 (gray: C=1, RGB: C=3); "
                 "the preprocessing below is inside the graph",
        "output": f"{OUTPUT_NAME}: float32 (N, {len(class_names)}), class probabilities in the "
                  "order of class_names",
        "preprocessing": json.dumps(model.preprocessing),
        "test_time_flip": json.dumps(model.test_time_flip),
        "output_activation": json.dumps(model.net.output_activation),
        "dataset": json.dumps(getattr(model, "dataset", None)),
        "test_accuracy": json.dumps(test_accuracy),
        "batch": str(batch), "summary": format_summary(model)}
    return meta


# -- sessions -----------------------------------------------------------------------------------
def session_options(threads: int | None):
    """The thread policy: intra-op threads = `threads`, default the CPUs this process may use
    (its affinity mask); one inter-op thread, sequential execution (a CNN is a chain)."""
    import onnxruntime as ort

    from cnnkit.serve.predictor import cpu_count

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_count()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: no warnings on stderr for a user's model
    return so


def _load_errors() -> tuple:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(getattr(state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph",
                                             "InvalidProtobuf", "NoSuchFile", "NoModel",
                                             "NotImplemented", "RuntimeException")
                 if hasattr(state, n))


def _session(source, threads, where: str):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(source, session_options(threads),
                                    providers=["CPUExecutionProvider"])
    except (*_load_errors(), UnicodeDecodeError) as e:  # names or text that are not UTF-8
        raise CnnkitError(f"{where}: not a model onnxruntime can load ({_first_line(e)})"
                          ) from None


def _first_line(e: Exception) -> str:
    """onnxruntime's message without its C++ source location and signature, which would push
    what went wrong past the length a message shows."""
    import re

    text = str(e).strip()
    text = re.sub(r"\S+\.(?:cc|cpp|h):\d+ [^()]*\([^()]*\)\s*", "", text)
    return clipped(text.splitlines()[0] if text else type(e).__name__, quote=False)


def model_session(model, threads: int | None = None, test_accuracy=None):
    """(session, metadata) for a cnnkit model, exported in memory: nothing is written."""
    from cnnkit.model.outputs import class_count

    names = model.class_names or [str(i) for i in range(class_count(model.output_shape[0]))]
    meta = model_metadata(model, "dynamic", names, test_accuracy)
    session = _session(model_bytes(model), threads, model.name)
    return session, read_metadata(meta, session, model.name)


def open_session(path, threads: int | None = None):
    """(session, metadata) for an .onnx file cnnkit exported."""
    from cnnkit.fsutil import readable_file

    path = readable_file(path, "ONNX model file")
    session = _session(str(path), threads, str(path))
    try:
        props = session.get_modelmeta().custom_metadata_map
    except UnicodeDecodeError as e:
        raise CnnkitError(f"{path}: metadata that is not UTF-8 text ({e.reason} at byte "
                          f"{e.start})") from None
    return session, read_metadata(props, session, str(path))


def read_metadata(props: dict, session, where: str) -> dict:
    """The metadata as Python values, checked against the graph's own input and output (one
    uint8 image input, one (N, K) output); every value a file can get wrong is one line."""
    from cnnkit.model.saving import check_preprocessing

    if props.get("format") != FORMAT:
        raise CnnkitError(f"{where}: not an ONNX file cnnkit exported (its metadata has no "
                          f"format {FORMAT!r}); export one with cnnkit export MODEL_OR_RUN")

    def value(key):
        return _metadata_value(props, key, where)

    shape, names = value("input_shape"), value("class_names")
    inputs, outputs = _signature(session.get_inputs, where), _signature(session.get_outputs, where)
    if len(inputs) != 1 or len(outputs) < 1:
        raise CnnkitError(f"{where}: a graph of {len(inputs)} inputs and {len(outputs)} outputs; "
                          "valid: one image input and a probabilities output")
    inp, out = inputs[0], outputs[0]
    if (not isinstance(shape, list) or len(shape) != 3 or inp.type != "tensor(uint8)"
            or list(inp.shape[1:]) != shape):
        raise CnnkitError(f"{where}: the graph's input {clipped(inp.name)} {inp.type} "
                          f"{clipped(inp.shape)} does not match its metadata "
                          f"input_shape={clipped(shape)}")
    if (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
            or len(out.shape) != 2 or out.shape[-1] != len(names)):
        raise CnnkitError(f"{where}: metadata class_names={clipped(names)} does not match the "
                          f"graph's output {clipped(out.name)} {clipped(out.shape)}; valid: "
                          "probabilities (N, K), one class name for each of the K")
    accuracy, dataset = value("test_accuracy"), value("dataset")
    number = isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool)
    if accuracy is not None and not (number and 0 <= accuracy <= 1):
        raise CnnkitError(f"{where}: metadata test_accuracy={clipped(accuracy)}; valid: a "
                          "number from 0 to 1, or null")
    if dataset is not None and not isinstance(dataset, str):
        raise CnnkitError(f"{where}: metadata dataset={clipped(dataset)}; valid: a name, or null")
    return {"name": printable(props.get("name", Path(where).stem)),
            "class_names": [printable(n) for n in names],
            "input_shape": tuple(shape), "summary": props.get("summary"),
            "preprocessing": check_preprocessing(value("preprocessing"), shape[2], where),
            "dataset": dataset, "test_accuracy": accuracy,
            "fixed_batch": inp.shape[0] == 1, "input_name": inp.name}


class _Arg:
    """A graph input's or output's name, type and shape, read once (onnxruntime decodes them
    as UTF-8 on every access, and raises for a name that is not)."""

    def __init__(self, arg):
        self.name, self.type, self.shape = arg.name, arg.type, list(arg.shape)


def _signature(args_of, where: str) -> list[_Arg]:
    try:
        return [_Arg(a) for a in args_of()]
    except UnicodeDecodeError as e:
        raise CnnkitError(f"{where}: a graph input or output whose name is not UTF-8 text "
                          f"({e.reason} at byte {e.start})") from None


def _metadata_value(props: dict, key: str, where: str):
    """One metadata entry, JSON text, parsed within cnnkit.io.bounded's limits."""
    from cnnkit.io.bounded import MAX_BYTES, parse_bounded

    text = props.get(key)
    if not isinstance(text, str) or len(text) > MAX_BYTES:
        raise CnnkitError(f"{where}: metadata {key}={clipped(text)} is not understood; "
                          "re-export the model with cnnkit export")
    return parse_bounded(text, "json", where, label=f"metadata {key} is not understood")


def run_session(session, pixels: np.ndarray, meta: dict) -> np.ndarray:
    """Probabilities (N, K) float32 for uint8 pixels (N, H, W, C), NaN refused; a graph that
    onnxruntime cannot run (an allocation it cannot make, a node that fails) is one line."""
    import onnxruntime as ort

    from cnnkit.model.predict import check_finite, in_batches

    name = meta["input_name"]
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the error comes back as one line, not a log on stderr

    def run(part):
        try:
            return session.run(None, {name: part}, quiet)[0]
        except (*_load_errors(), UnicodeDecodeError) as e:
            raise CnnkitError(f"the ONNX model {clipped(meta.get('name'))} cannot run on this "
                              f"input ({_first_line(e)})") from None

    return check_finite(in_batches(run, pixels, 1 if meta["fixed_batch"] else ORT_BATCH,
                                   np.concatenate))


# -- export ---------------------------------------------------------------------------------------
def export_onnx(model_or_run, out, opset: int | None = None, batch: str = "dynamic",
                check: bool = True, dataset: str | None = None, data_dir=None,
                tolerance: float = TOLERANCE, exporter: str = "torchscript",
                threads: int | None = None, quantize: str | None = None,
                max_drop: float = 0.5, calibration: int = 512) -> ExportReport:
    """Export a model (anything `open_model` takes) to `out` (.onnx), checking parity with
    PyTorch first; nothing is written when the export or the check fails. `quantize` ("int8",
    "fp16") writes the smaller graph instead, judged beside fp32 on the whole test split
    (`report.quantized`); more than `max_drop` points of test accuracy lost writes nothing."""
    from cnnkit.fsutil import atomic_path
    from cnnkit.model.resolve import open_model
    from cnnkit.serve.parity import ExportReport, check_parity, parity_images
    from cnnkit.serve.predictor import check_threads, is_onnx_file, run_test_accuracy

    opset = check_options(opset, batch, exporter, tolerance)
    check_threads(threads)
    if quantize is not None:
        from cnnkit.serve.quantize import check_quantize

        check_quantize(quantize, max_drop, calibration)
    batch = str(batch)
    out = Path(out)
    if out.is_dir():
        raise CnnkitError(f"out={str(out)!r} is a folder; valid: a file name such as "
                          f"{out / 'model.onnx'}", "out", str(out))
    if out.suffix.lower() != ".onnx":
        raise CnnkitError(f"out={str(out)!r} does not end in .onnx; valid: a file name such as "
                          "model.onnx", "out", str(out))
    if is_onnx_file(model_or_run):
        raise CnnkitError(f"{model_or_run} is an ONNX file already; export from the saved model "
                          "or run it came from")
    from cnnkit.model.outputs import class_count

    model, run_dir = open_model(model_or_run)
    model.check_classifier()
    with atomic_path(out) as tmp:  # the temporary now: a read-only folder fails before the work
        names = model.class_names
        if check or quantize:
            where, x, ds_names, y = parity_images(model, run_dir, dataset, data_dir)
            names = names or ds_names
        names = names or [str(i) for i in range(class_count(model.output_shape[0]))]
        props = model_metadata(model, batch, names, run_test_accuracy(run_dir))
        t0 = time.perf_counter()
        data = model_bytes(model, opset, batch, exporter, props)
        report = ExportReport(out, opset, batch, exporter, len(data), time.perf_counter() - t0,
                              "not checked", tolerance=float(tolerance))
        if check:
            session = _session(data, threads, str(out))
            check_parity(report, model, session, read_metadata(props, session, str(out)),
                         where, x, tolerance)
        if quantize:
            from cnnkit.serve.quantize import quantize_checked

            data = quantize_checked(data, quantize, model, (run_dir, dataset, data_dir),
                                    (where, x, y), max_drop, calibration, threads, report)
        tmp.write_bytes(data)
    return report
