"""cnnkit's stem kernel (cnnkit/kernels/stem.cpp): the first Conv2D and its 2x2 max-pool in one
pass, against torch's own conv and pool on the same weights."""
import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch

from cnnkit import kernels
from cnnkit.kernels.stem import run_stem, stem_pair
from cnnkit.layers import Conv2D, Dense, Flatten, MaxPooling2D
from cnnkit.model.presets import create_model
from cnnkit.model.sequential import Sequential
from cnnkit.train.module import as_model


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    # the machines this project runs on have g++ (make setup builds the library): a missing
    # compiler is a broken set-up here, not a reason to test less
    kernels.build()  # as `make setup` does: a forward pass never compiles them
    assert kernels.loaded() is not None, kernels.why_not()


def _net(layers, shape=(28, 28, 1)):
    return as_model(Sequential(layers, input_shape=shape)).net.to(memory_format=torch.channels_last)


def _images(n=64, shape=(28, 28, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, shape[2], shape[0], shape[1]), generator=g).float() / 255
    return x.contiguous(memory_format=torch.channels_last)  # (B, C, H, W), as training feeds it


def _both(net, x, bf16):
    """(kernel output, torch output) of the first two steps."""
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else torch.no_grad
    with torch.no_grad(), ctx():
        mine = run_stem(net.steps, x)
        ref = net.steps[1](net.steps[0](x))
    assert mine is not None, "the kernel did not run"
    return mine, ref


@pytest.mark.parametrize("filters,kernel,padding,channels", [
    (16, 3, "same", 1), (32, 3, "same", 1), (32, 3, "valid", 1), (64, 5, "same", 3),
    (16, 3, "valid", 1)])
def test_forward_matches_torch(filters, kernel, padding, channels):
    shape = (28, 28, channels) if padding == "same" else (27, 27, channels)  # odd: floor pooling
    net = _net([Conv2D(filters, kernel, padding=padding, use_bias=kernel == 5), MaxPooling2D(2),
                Flatten(), Dense(10)], shape)
    assert stem_pair(net.steps)
    x = _images(shape=shape)
    mine, ref = _both(net, x, bf16=False)
    assert mine.shape == ref.shape and mine.dtype == torch.float32
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    mine, ref = _both(net, x, bf16=True)
    assert mine.dtype == ref.dtype == torch.bfloat16
    # bf16: the same rounding as autocast; sums in another order move at most one bf16 step
    diff = (mine.float() - ref.float()).abs()
    assert (diff <= ref.float().abs() * 2 ** -7 + 1e-6).all()
    assert (diff == 0).float().mean() > 0.99


def test_a_training_step_gives_torchs_gradients():
    """The whole network, the stem, the pools and batch norm + ReLU on cnnkit's kernels, against
    torch's ops in float64: float32 to rounding; bf16 as far from them as torch's own bf16 (an
    untrained network's bf16 gradients are 1-30% of their largest value off, either way). Not
    torch's float32 as the reference: on one thread its oneDNN conv's weight gradient here is
    0.6% of its largest value off float64 (with two, 1e-5), where the kernel's is 1e-5 on both."""
    torch.manual_seed(0)
    net = as_model(create_model("fast-cnn-dense")).net.to(memory_format=torch.channels_last)
    x, y = _images(128), torch.randint(0, 10, (128,))

    def grads(fused, bf16, dtype=torch.float32):
        net.to(dtype).zero_grad(set_to_none=True)
        with contextlib.nullcontext() if fused else kernels.disabled():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(net(x.to(dtype)).float(), y)
            loss.backward()
        out = {n: p.grad.double() for n, p in net.named_parameters()}
        net.float()
        return out

    ref = grads(False, False, torch.float64)
    mine, torch_bf16, mine_bf16 = grads(True, False), grads(False, True), grads(True, True)
    assert ref.keys() == mine.keys() == mine_bf16.keys()
    for name, g in ref.items():
        scale = g.abs().max()
        assert (mine[name] - g).abs().max() <= 1e-4 * scale, name
        theirs = (torch_bf16[name] - g).abs().max()
        assert (mine_bf16[name] - g).abs().max() <= 1.25 * theirs + 1e-3 * scale, name


def test_weight_and_bias_gradients_with_a_bias_and_three_channels():
    net = _net([Conv2D(32, 3, padding="same"), MaxPooling2D(2), Flatten(), Dense(10)],
               (20, 20, 3))
    x = _images(16, (20, 20, 3))
    conv = net.steps[0].conv
    out = {}
    for fused in (True, False):
        conv.zero_grad(set_to_none=True)
        with contextlib.nullcontext() if fused else kernels.disabled():
            net(x).square().sum().backward()
        out[fused] = (conv.weight.grad.clone(), conv.bias.grad.clone())
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[True][1], out[False][1], rtol=1e-4, atol=1e-4)


def test_one_thread_and_two_give_the_same_forward():
    net = as_model(create_model("seed003-cnn")).net.to(memory_format=torch.channels_last)
    x, threads = _images(), torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                outs.append(run_stem(net.steps, x))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("layers,shape,why", [
    ([Conv2D(24, 3, padding="same"), MaxPooling2D(2)], (28, 28, 1), "24 filters: not 16k"),
    ([Conv2D(16, 3, strides=2), MaxPooling2D(2)], (28, 28, 1), "stride 2"),
    ([Conv2D(16, 3, padding="same"), MaxPooling2D(3)], (28, 28, 1), "3x3 pool"),
    ([Conv2D(16, 3, padding="same"), MaxPooling2D(2, 1)], (28, 28, 1), "pool stride 1"),
    ([Conv2D(16, 4, padding="same"), MaxPooling2D(2)], (28, 28, 1), "even kernel, Keras pads one side"),
    ([Conv2D(16, 3, padding="same"), MaxPooling2D(2)], (28, 28, 8), "8 input channels"),
])
def test_other_layers_stay_on_torchs_ops(layers, shape, why):
    assert not stem_pair(_net(layers + [Flatten(), Dense(10)], shape).steps), why


def test_where_the_kernel_cannot_follow_torch_runs():
    net = as_model(create_model("fast-cnn")).net.to(memory_format=torch.channels_last)
    x = _images(8)
    assert run_stem(net.steps, x) is not None
    assert run_stem(net.steps, x.clone().requires_grad_()) is None  # a saliency map's input
    with torch.autocast("cpu", dtype=torch.float16):
        assert run_stem(net.steps, x) is None
    assert run_stem(net.steps, x.double()) is None
    seen = []
    handle = net.steps[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:  # a hook on the conv (feature maps, Grad-CAM) sees the conv's own output
        assert run_stem(net.steps, x) is None
        net(x)
    finally:
        handle.remove()
    assert seen == [torch.Size([8, 16, 28, 28])]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_an_exported_onnx_graph_holds_torchs_ops(tmp_path, exporter):
    import onnx

    from cnnkit.serve.onnx import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(create_model("fast-cnn"), path, exporter=exporter)  # checks parity with torch
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Conv", "MaxPool"} <= ops, ops


def _python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_without_a_compiler_cnnkit_trains_on_torchs_ops(tmp_path):
    code = ("import json, torch; from cnnkit import kernels; from cnnkit.model.presets import "
            "create_model; m = create_model('fast-cnn'); "
            "p = m.predict(torch.zeros(2, 28, 28, 1, dtype=torch.uint8)); "
            "print(json.dumps([kernels.description(), p.shape[0]]))")
    r = _python(code, CXX="/bin/false", PATH="/nonexistent", CNNKIT_CACHE=str(tmp_path))
    assert r.returncode == 0, r.stderr
    desc, n = json.loads(r.stdout.splitlines()[-1])
    assert n == 2
    assert desc.startswith("torch (") and "compil" in desc, desc


def test_cnnkit_kernels_torch_turns_them_off_and_a_run_records_it(tmp_path):
    for value, expected in (("torch", "torch (CNNKIT_KERNELS=torch)"), ("auto", "cnnkit")):
        out = tmp_path / value
        subprocess.run([sys.executable, "-m", "cnnkit", "train", "--model", "fast-cnn-dense",
                        "--dataset", "digits", "--epochs", "1", "--quiet", "--out", str(out)],
                       check=True, timeout=300, env={**os.environ, "CNNKIT_KERNELS": value})
        config = json.loads((out / "config.json").read_text())
        assert config["resolved"]["kernels"] == expected
        assert bool(config["resolved"]["kernel_layers"]) == (value == "auto")


def test_a_bad_cnnkit_kernels_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "cnnkit", "train", "--model", "fast-cnn-dense",
                        "--dataset", "digits", "--epochs", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "CNNKIT_KERNELS": "fast"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "cnnkit: error: CNNKIT_KERNELS must be one of auto, torch; got 'fast'"]
    assert not out.exists()
