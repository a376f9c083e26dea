"""ONNX files that are malformed or hostile, as `cnnkit serve`, `predict` and the server meet
them: metadata nested thousands deep, a scalar output, a graph onnxruntime cannot allocate,
metadata of the wrong types. Each is one line (a start-up line for the command, the documented
JSON error from the server), never a traceback, a 500 or a RecursionError.

The graphs are built with onnx.helper: a uint8 image (N, 4, 4, 1) in, two "probabilities" out
(the first two pixels), with the metadata cnnkit's exporter writes."""
import io

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.serve.app import create_app
from cnnkit.serve.onnx import FORMAT, open_session, run_session
from cnnkit.serve.predictor import Predictor

META = {"format": FORMAT, "input_shape": "[4, 4, 1]", "class_names": '["a", "b"]',
        "preprocessing": '{"normalize": "unit"}', "dataset": "null", "test_accuracy": "null"}
CONSTANTS = [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 16]),
             helper.make_tensor("start", TensorProto.INT64, [1], [0]),
             helper.make_tensor("end", TensorProto.INT64, [1], [2]),
             helper.make_tensor("axis", TensorProto.INT64, [1], [1])]
FIRST_TWO = [helper.make_node("Reshape", ["f", "shape"], ["r"]),
             helper.make_node("Slice", ["r", "start", "end", "axis"], ["p"])]
CAST = helper.make_node("Cast", ["pixels"], ["f0"], to=TensorProto.FLOAT)


def onnx_file(path, nodes, out_shape=("N", 2), constants=(), **metadata):
    inp = helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 4, 4, 1])
    out = helper.make_tensor_value_info("p", TensorProto.FLOAT, list(out_shape))
    graph = helper.make_graph([CAST, *nodes], "g", [inp], [out],
                              initializer=[*CONSTANTS, *constants])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (META | metadata).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path.write_bytes(model.SerializeToString())
    return path


PLAIN = [helper.make_node("Identity", ["f0"], ["f"]), *FIRST_TWO]
# ConstantOfShape asks for 2**20 × 2**20 × 16 floats (64 TiB) before the two outputs
HUGE = [helper.make_node("ConstantOfShape", ["big"], ["z"],
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
        helper.make_node("Add", ["z", "f0"], ["f"]), *FIRST_TWO]
BIG = helper.make_tensor("big", TensorProto.INT64, [5], [2**20, 2**20, 4, 4, 1])

AT_START = {  # case: (nodes, output shape, metadata, the line says)
    "class_names nested 100,000 deep": (PLAIN, ("N", 2), {"class_names": "[" * 100_000 +
                                                          "]" * 100_000},
                                        "metadata class_names is not understood (lists and "
                                        "mappings nested too deep"),
    "a scalar output": ([helper.make_node("ReduceSum", ["f0"], ["p"], keepdims=0)], (), {},
                        "does not match the graph's output 'p' []; valid: probabilities (N, K)"),
    "test_accuracy a mapping": (PLAIN, ("N", 2), {"test_accuracy": '{"a": 1}'},
                                "metadata test_accuracy={'a': 1}; valid: a number from 0 to 1"),
    "dataset a list": (PLAIN, ("N", 2), {"dataset": "[1]"}, "metadata dataset=[1]; valid: a name"),
    "input_shape a mapping": (PLAIN, ("N", 2), {"input_shape": '{"a": 1}'},
                              "does not match its metadata input_shape={'a': 1}"),
}


@pytest.mark.parametrize("case", sorted(AT_START))
def test_malformed_onnx_files_are_one_line_when_opened_and_served(tmp_path, capsys, case):
    nodes, out_shape, metadata, says = AT_START[case]
    path = onnx_file(tmp_path / "m.onnx", nodes, out_shape, **metadata)
    with pytest.raises(CnnkitError) as e:
        open_session(path)
    assert says in str(e.value) and str(e.value).startswith(str(path))
    assert main(["serve", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnkit: error: ") and says in err


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_a_graph_onnxruntime_cannot_allocate_is_a_json_error_not_a_500(tmp_path, serve):
    path = onnx_file(tmp_path / "huge.onnx", HUGE, constants=[BIG])
    session, meta = open_session(path)
    with pytest.raises(CnnkitError, match=r"the ONNX model 'huge' cannot run on this input "
                                          r"\(.*Failed to allocate memory"):
        run_session(session, np.zeros((1, 4, 4, 1), np.uint8), meta)
    server = serve(create_app(Predictor(path)))
    r = httpx.post(f"{server.url}/api/predict", content=png(np.zeros((4, 4), np.uint8)),
                   headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and list(r.json()) == ["error"], r.text
    assert "cannot run on this input" in r.json()["error"] and "\n" not in r.json()["error"]
    # and a well-formed graph of the same shape answers
    good = serve(create_app(Predictor(onnx_file(tmp_path / "good.onnx", PLAIN))))
    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    r = httpx.post(f"{good.url}/api/predict", content=png(pixels),
                   headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["probabilities"], [0, 16], atol=1e-6)


def test_metadata_that_is_not_utf8_is_one_line(tmp_path):
    """protobuf strings are UTF-8 by contract; a file's bytes need not be (onnxruntime raised
    UnicodeDecodeError)."""
    path = onnx_file(tmp_path / "m.onnx", PLAIN, dataset='"digits"')
    path.write_bytes(path.read_bytes().replace(b'"digits"', b'"\x80igits"'))
    with pytest.raises(CnnkitError, match="m.onnx: .*not UTF-8"):
        open_session(path)


def test_a_graph_input_named_in_bytes_that_are_not_utf8_is_one_line(tmp_path):
    """onnxruntime decodes an input's name on each access (UnicodeDecodeError, found by
    bench/fuzz_readers.py)."""
    path = onnx_file(tmp_path / "m.onnx", PLAIN)
    path.write_bytes(path.read_bytes().replace(b"pixels", b"\x94ixels"))
    with pytest.raises(CnnkitError, match="m.onnx: a graph input or output whose name is not "
                                          "UTF-8 text"):
        open_session(path)
