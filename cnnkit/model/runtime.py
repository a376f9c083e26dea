"""Which runtime computes a model's probabilities: "torch" (its own forward pass), "onnx"
(onnxruntime on the exported graph, cnnkit.serve), or "auto". Here, below both runs and serve,
so `cnnkit.evaluate` and `cnnkit.Predictor` choose alike."""
from __future__ import annotations

RUNTIMES = ("auto", "torch", "onnx")
# What "auto" picks for a cnnkit model (an .onnx file always runs on onnxruntime), from
# bench/bench_infer.py's figures (bench/README.md): onnxruntime predicts faster than torch, one
# image or many, so a Predictor, which is made to be kept (the server), runs on onnx. Starting
# one costs about a second more (torch.onnx imports `onnx`, then exports), which a one-off job
# wins back only after thousands of images: AUTO_ONNX_MIN_IMAGES keeps a margin over that.
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
