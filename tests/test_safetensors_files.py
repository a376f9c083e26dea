"""Every safetensors file cnnkit reads (a saved model's weights, a training state, PyTorch
weights) goes through one reader that checks its header before a tensor is allocated: a header
length of terabytes, a dtype cnnkit cannot compute in (F8), a shape its bytes cannot hold, a
header nested thousands deep are each one line naming the file."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.io.tensors import read_safetensors, safetensors_header
from cnnkit.model.sequential import Sequential
from cnnkit.train.state import read_state, write_state

MODEL = {"input_shape": [4, 4, 1], "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}},
                                              {"Flatten": {}},
                                              {"Dense": {"units": 2, "activation": "softmax"}}]}


def header_file(path: Path, header: dict | bytes, data: bytes = bytes(16), length=None) -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes((len(text) if length is None else length).to_bytes(8, "little") + text + data)
    return path


BAD = {  # name: (header, the line says)
    "a header length of a terabyte": ({"w": {"dtype": "F32", "shape": [4],
                                             "data_offsets": [0, 16]}}, 2**40,
                                      "a safetensors header length of 1,099,511,627,776; valid: 1 to "),
    "an F8 tensor": ({"w": {"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}}, None,
                     "tensor 'w' has dtype 'F8_E4M3'; valid: F64, F32"),
    "a shape of 4 TiB in 16 bytes": ({"w": {"dtype": "F32", "shape": [2**20, 2**20],
                                            "data_offsets": [0, 16]}}, None,
                                     "needs 4,398,046,511,104 bytes; the file gives it 16"),
    "a negative size": ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, None,
                        "has shape [-4]; valid: a list of sizes >= 0"),
    "data past the end": ({"w": {"dtype": "U8", "shape": [64], "data_offsets": [0, 64]}}, None,
                          "data_offsets [0, 64]; valid: [begin, end] within the file's 16 bytes"),
    "a header nested 5,000 deep": (b'{"w": ' + b"[" * 5000 + b"]" * 5000 + b"}", None,
                                   "nested too deep"),
    "a tensor that is a number": ({"w": 3}, None, "tensor 'w' is 3; valid: a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_headers_are_one_line_before_anything_is_read(tmp_path, case):
    header, length, says = BAD[case]
    path = header_file(tmp_path / "w.safetensors", header, length=length)
    with pytest.raises(CnnkitError) as e:
        read_safetensors(path)
    assert says in str(e.value) and str(e.value).startswith(str(path))
    assert "\n" not in str(e.value)


def test_a_saved_model_with_f8_weights_is_refused_in_one_line(tmp_path):
    """A saved model's weights re-saved as float8 (torch writes them; cnnkit computes in
    float32 and cannot read float8 back exactly): one line, not a traceback from the network."""
    model = Sequential.from_config(MODEL)
    model.save(tmp_path / "m")
    weights = tmp_path / "m" / "weights.safetensors"
    state = read_safetensors(weights)
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in state.items()}, str(weights))
    with pytest.raises(CnnkitError, match=r"weights.safetensors: unreadable weights \(tensor "
                                          r"'.*' has dtype 'F8_E4M3'; valid: F64, F32"):
        cnnkit.load(tmp_path / "m")


def test_a_training_state_with_a_lying_header_is_refused_in_one_line(tmp_path):
    write_state(tmp_path / "s", {"w": torch.ones(2, 2)}, {"epoch": 1, "history": {}})
    header_file(tmp_path / "s" / "model.safetensors",
                {"w": {"dtype": "F32", "shape": [2**30, 2**30], "data_offsets": [0, 16]}})
    with pytest.raises(CnnkitError, match="model.safetensors: does not match its checksum"):
        read_state(tmp_path / "s")
    (tmp_path / "s" / "SHA256SUMS").unlink()  # an older state, with no checksums to compare
    with pytest.raises(CnnkitError, match="model.safetensors: unreadable training state "
                                         r"\(tensor 'w' of shape .* needs "):
        read_state(tmp_path / "s")


def test_valid_files_read_back_exactly_with_their_metadata(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "b": torch.tensor([1, -2], dtype=torch.int64), "c": torch.ones(0, 3),
               "d": torch.tensor([True, False]), "e": torch.ones(3, dtype=torch.bfloat16)}
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"format": "pt"})
    back = read_safetensors(tmp_path / "t.safetensors")
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())
    assert safetensors_header(tmp_path / "t.safetensors")["__metadata__"] == {"format": "pt"}
