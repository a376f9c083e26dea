"""Which runtime computes a model's probabilities: "torch" (its own forward pass), "onnx"
(onnxruntime on the exported graph, cnnkit.serve), or "auto". Here, below both runs and serve,
so `cnnkit.evaluate` and `cnnkit.Predictor` choose alike."""
from __future__ import annotations

RUNTIMES = ("auto", "torch", "onnx")
# What "auto" picks for a cnnkit model (an .onnx file always runs on onnxruntime), from
# bench/bench_infer.py's figures (seed003-cnn, 2 shared cores): onnxruntime predicted one image
# in 0.11-0.13 ms against 0.33-0.42 ms on torch, and 10,000 at ~2x torch's images/s, so a
# Predictor, which is made to be kept (the server), runs on onnx. Starting one costs 0.8-1.3 s
# more (torch.onnx imports `onnx`, 0.7 s, then exports), which a one-off job won back from
# 4,300-6,500 images in three runs: AUTO_ONNX_MIN_IMAGES keeps a margin over that.
AUTO_RUNTIME = "onnx"
AUTO_ONNX_MIN_IMAGES = 10_000


def auto_runtime(runtime: str, images: int | None = None) -> str:
    """The runtime `runtime` names for a cnnkit model: 'auto' is onnx for a Predictor that
    is kept (images=None) or a one-off job on at least AUTO_ONNX_MIN_IMAGES images."""
    if runtime != "auto":
        return runtime
    if images is None or images >= AUTO_ONNX_MIN_IMAGES:
        return AUTO_RUNTIME
    return "torch"
