"""cnnkit's kernels are compiled by `python -m cnnkit.kernels` (make setup) or at the start of a
run cnnkit starts, never inside a forward pass; and a run's config.json names every layer they
compute, by kernel."""
import json
import os
import stat
import subprocess
import sys

import pytest
import torch

import cnnkit
from cnnkit import kernels

# a model's predict, and a training-mode forward and backward in bf16 (where all three kernels
# would take their layers), against the same with cnnkit's kernels off: torch's own ops
FORWARDS = """
import json, torch
from cnnkit import kernels
from cnnkit.model.presets import create_model

torch.manual_seed(0)
model = create_model("fast-cnn-dense", input_shape=(28, 28, 1), num_classes=10)
images = torch.randint(0, 256, (16, 28, 28, 1), dtype=torch.uint8)
x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)

def both():
    probs = model.predict(images)
    model.net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.net(x)
    out.float().sum().backward()
    grad = model.net.layers["dense_1"].linear.weight.grad.clone()
    model.net.zero_grad(set_to_none=True)
    return probs, out.float(), grad

state = {k: v.clone() for k, v in model.net.state_dict().items()}
mine = both()
model.net.load_state_dict(state)
with kernels.disabled():
    theirs = both()
same = all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(mine, theirs))
print(json.dumps({"description": kernels.description(), "same_as_torch": same}))
"""


def _python(code_or_args, cache, cxx):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CNNKIT_CACHE": str(cache), "CXX": str(cxx),
                               "CNNKIT_KERNELS": "auto"})


@pytest.fixture
def counting_compiler(tmp_path):
    """A C++ compiler that leaves a line in calls.txt each time it is run, then runs g++."""
    real = kernels.compiler()
    assert real is not None, "this project's machines have g++ (make setup)"
    calls = tmp_path / "calls.txt"
    cxx = tmp_path / "cxx"
    cxx.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{real}" "$@"\n')
    cxx.chmod(cxx.stat().st_mode | stat.S_IXUSR)
    return cxx, calls


def test_a_forward_pass_never_compiles_and_python_m_cnnkit_kernels_does(tmp_path,
                                                                         counting_compiler):
    cxx, calls = counting_compiler
    cache = tmp_path / "cache"
    r = _python(FORWARDS, cache, cxx)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.splitlines()[-1])
    assert not calls.exists(), calls.read_text()  # no compiler was started, not even --version
    assert not list(cache.rglob("*.so"))
    assert first["same_as_torch"]  # the network ran torch's own ops, to the bit
    assert first["description"].startswith("torch (not compiled"), first

    r = _python(["-m", "cnnkit.kernels"], cache, cxx)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "cnnkit kernels: cnnkit"
    assert calls.exists() and len(list(cache.rglob("*.so"))) == 1

    calls.unlink()
    r = _python(FORWARDS, cache, cxx)  # a later process loads what was built, compiles nothing
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["description"] == "cnnkit"
    assert not calls.exists()


def test_a_run_compiles_them_at_its_start_and_says_so(tmp_path, counting_compiler):
    cxx, calls = counting_compiler
    cache, out = tmp_path / "cache", tmp_path / "run"
    r = _python(["-m", "cnnkit", "train", "--model", "fast-cnn-dense", "--dataset", "digits",
                 "--epochs", "1", "--out", str(out)], cache, cxx)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    compiling = [i for i, line in enumerate(lines) if line.startswith("Compiling cnnkit's kernels")]
    training = [i for i, line in enumerate(lines) if line.startswith("Training ")]
    assert compiling and training and compiling[0] < training[0], r.stdout
    assert calls.exists() and len(list(cache.rglob("*.so"))) == 1
    assert json.loads((out / "config.json").read_text())["resolved"]["kernels"] == "cnnkit"


def _kernel_functions(net, x):
    """The names of cnnkit's kernels' autograd functions in one bf16 training step's graph: the
    kernels that ran, counted."""
    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    seen, todo, found = set(), [out.grad_fn], []
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ in ("_StemBackward", "_PoolBackward", "_BNReLUBackward"):
            found.append(type(fn).__name__[1:-len("Backward")])
        todo.extend(f for f, _ in fn.next_functions)
    return sorted(found)


# config.json lists exactly the kernels a training step runs (best-cnn: today's code said
# "torch (no layers of this model that cnnkit's kernels compute)")
@pytest.mark.parametrize("spec", [dict(model="best-cnn"), dict(recipe="fast")],
                         ids=["best-cnn", "fast-recipe"])
def test_config_json_names_every_layer_a_kernel_computes(tmp_path, spec):
    kernels.build()
    out = tmp_path / "run"
    result = cnnkit.run(cnnkit.RunSpec(**spec, dataset="digits", epochs=1, verbose=0,
                                       out=str(out), seed=0))
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["kernels"] == "cnnkit"
    layers = resolved["kernel_layers"]
    net = result.model.net
    ran = _kernel_functions(net, torch.rand(8, 1, 8, 8).contiguous(
        memory_format=torch.channels_last))
    named = sorted(k for k, names in layers.items() for _ in names)
    assert named == sorted({"Stem": "stem", "Pool": "pool", "BNReLU": "bn_relu"}[f] for f in ran)
    for names in layers.values():  # every name is one of the model's layers
        for pair in names:
            assert all(n in net.layers for n in pair.split(" + ")), layers
    if spec.get("model") == "best-cnn":  # three 2x2 pools and three batch norm + ReLU
        assert layers == {"pool": ["max_pooling2d", "max_pooling2d_1", "max_pooling2d_2"],
                          "bn_relu": ["batch_normalization + activation",
                                      "batch_normalization_1 + activation_1",
                                      "batch_normalization_2 + activation_2"]}
    else:  # fast-cnn-dense: the stem, two more pools, four batch norm + ReLU
        assert layers["stem"] == ["conv2d + max_pooling2d"]
        assert layers["pool"] == ["max_pooling2d_1", "max_pooling2d_2"]
        assert len(layers["bn_relu"]) == 4


def test_where_no_kernel_will_run_config_json_says_torch_and_why():
    from torch import nn

    from cnnkit.kernels.fuse import prepare
    from cnnkit.model.presets import create_model

    net = create_model("fast-cnn-dense").net
    said = []
    assert prepare(net, "cuda", "auto", said.append) == ("torch (a CUDA device)", {})
    assert prepare(net, "cpu", "fp16", said.append) == (
        "torch (fp16: cnnkit's kernels compute bf16 and float32)", {})
    own = nn.Sequential(nn.Conv2d(1, 16, 3), nn.MaxPool2d(2), nn.Flatten())  # a user's module
    assert prepare(own, "cpu", "auto", said.append) == (
        "torch (no layers of this model that cnnkit's kernels compute)", {})
    assert said == []  # nothing compiled, nothing to say


def test_a_library_that_fails_verification_is_never_loaded_and_is_rebuilt(tmp_path,
                                                                          counting_compiler):
    cxx, calls = counting_compiler
    cache = tmp_path / "cache"
    assert _python(["-m", "cnnkit.kernels"], cache, cxx).returncode == 0
    (lib,) = cache.rglob("*.so")
    assert (lib.parent / f"{lib.name}.sha256").is_file()
    assert lib.parent.stat().st_mode & 0o077 == 0  # the user's own folder

    # a changed library (here: bytes appended, which still loads) runs nothing of its own
    lib.write_bytes(lib.read_bytes() + b"\0changed")
    calls.unlink()
    r = _python(FORWARDS, cache, cxx)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.splitlines()[-1])
    assert seen["description"].startswith("torch (the cached kernel library failed "
                                          "verification"), seen
    assert "SHA-256 differs" in seen["description"] and seen["same_as_torch"]
    assert not calls.exists()  # a forward pass never compiles, even then

    # python -m cnnkit.kernels rebuilds it, saying so in one line
    r = _python(["-m", "cnnkit.kernels"], cache, cxx)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "failed verification" in line]
    assert len(warned) == 1 and warned[0].endswith("; rebuilding it"), r.stderr
    assert r.stdout.splitlines()[-1] == "cnnkit kernels: cnnkit" and calls.exists()

    # a folder others may write to: refused, and the start of a run rebuilds in a folder of
    # the user's own
    lib.parent.chmod(0o777)
    r = _python(FORWARDS, cache, cxx)
    assert "writable by others (mode 777)" in json.loads(r.stdout.splitlines()[-1])[
        "description"]
    out = tmp_path / "run"
    r = _python(["-m", "cnnkit", "train", "--model", "fast-cnn-dense", "--dataset", "digits",
                 "--epochs", "1", "--limit", "200", "--out", str(out)], cache, cxx)
    assert r.returncode == 0, r.stderr
    assert "writable by others (mode 777); rebuilding it" in r.stderr
    assert lib.parent.stat().st_mode & 0o777 == 0o700
    assert json.loads((out / "config.json").read_text())["resolved"]["kernels"] == "cnnkit"
