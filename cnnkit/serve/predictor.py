"""One object that turns images into class probabilities, on PyTorch or onnxruntime.

    p = cnnkit.Predictor("runs/fashion")            # a run (its best model), a saved model,
    p.predict(images)                               # a preset, a model file, a Sequential,
    p.top_k("shirt.png", k=3)                       # or an exported .onnx file

`cnnkit predict`, `cnnkit evaluate --runtime` and the web server all predict through it, so an
image gets the same probabilities however it is asked for. Images go through the input
contract (`cnnkit.model.inputs.to_pixels`: files, PIL images, arrays, tensors; one or a batch)
to uint8 pixels at the model's shape; then
- runtime "torch": `cnnkit.model.predict.predict_proba`, the model's own forward pass;
- runtime "onnx": an onnxruntime session on the exported graph (`cnnkit.serve.onnx`), which
  takes those uint8 pixels as they are and does the model's preprocessing itself.
Both end in the output contract's probabilities (N, K), and both refuse NaN or infinite ones.

Threads: `threads`. onnxruntime's intra-op pool gets that many, default the thread policy's
choice when the Predictor is made (`cnnkit.train.threads.settle_threads`: the cores this process
may use, honouring taskset, cpusets and cgroup quotas, fewer where other programs hold some of
them at that moment; or CNNKIT_THREADS), with one inter-op thread (a CNN's graph is a chain:
nothing runs side by side). On torch, a `threads` given is `torch.set_num_threads`, which is
process-wide (torch has one pool); without one the Predictor leaves the caller's count alone
(a notebook's, a server's) and uses it.

runtime="auto": onnxruntime for an .onnx file (the only runtime it has), else as
`cnnkit.model.runtime.auto_runtime` chooses; `Predictor.runtime` says which one was chosen.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.model.resolve import is_onnx_file, open_model, parse_reference
from cnnkit.model.runtime import (  # noqa: F401  (names serve has always had)
    AUTO_ONNX_MIN_IMAGES, AUTO_RUNTIME, RUNTIMES, auto_runtime)

def cpu_count() -> int:
    """The CPUs this process may use: its affinity mask, not the machine's core count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def check_threads(threads):
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise out_of_range("threads", threads, "an integer >= 1 (default: the CPUs this "
                           f"process may use, {cpu_count()})")
    if threads is not None:
        from cnnkit.train.cpus import check_count

        check_count("threads", threads, cpu_count())
    return threads


def run_test_accuracy(run_dir) -> float | None:
    """A run's test accuracy from its metrics.json; None without a finished run."""
    from cnnkit.io.rundir import RunDir

    return None if run_dir is None else RunDir(run_dir).test_accuracy()


class Predictor:
    """Class probabilities for images from a model on the runtime chosen (`runtime`)."""

    def __init__(self, model_or_path, runtime: str = "auto", threads: int | None = None):
        if runtime not in RUNTIMES:
            raise one_of("runtime", runtime, RUNTIMES)
        self.threads = check_threads(threads)
        self.run_dir: Path | None = None
        self._session = None
        self._meta: dict = {}
        if is_onnx_file(model_or_path):
            if runtime == "torch":
                raise CnnkitError(f"{model_or_path}: an .onnx file runs on onnxruntime only; "
                                  "valid: runtime 'onnx' or 'auto' (or pass the saved model "
                                  "or run it was exported from)")
            from cnnkit.serve.onnx import open_session

            self.model = None
            self._session, self._meta = open_session(parse_reference(model_or_path).target,
                                                     self._onnx_threads())
            self.runtime = "onnx"
            self.name = self._meta["name"]
            self.class_names = list(self._meta["class_names"])
            self.input_shape = tuple(self._meta["input_shape"])
            self.dataset = self._meta["dataset"]
            return
        self.model, self.run_dir = open_model(model_or_path)  # any reference (model.resolve)
        model = self.model
        if getattr(model, "foreign", False):  # a user's own nn.Module (cnnkit.fit)
            if runtime == "onnx":
                raise CnnkitError(f"runtime 'onnx' exports models cnnkit built (their input "
                                  f"contract goes into the graph), not your own nn.Module "
                                  f"{type(model.module).__name__}; valid: runtime 'torch' or "
                                  "'auto'")
            runtime = "torch"
        self.input_shape = tuple(model._require_input())
        model.check_classifier()
        from cnnkit.model.outputs import class_count

        count = class_count(model.output_shape[0])
        self.name = model.name
        self.dataset = getattr(model, "dataset", None)
        self.class_names = list(model.class_names or [str(i) for i in range(count)])
        self.runtime = auto_runtime(runtime)
        if self.runtime == "onnx":
            from cnnkit.serve.onnx import model_session

            self._session, self._meta = model_session(model, self._onnx_threads(),
                                                      test_accuracy=run_test_accuracy(self.run_dir))
        elif self.threads is not None:  # asked for: torch's one pool, process-wide
            from cnnkit.train.threads import set_threads

            set_threads(self.threads)
        else:  # the caller's own count, unchanged
            import torch

            self.threads = torch.get_num_threads()

    def _onnx_threads(self) -> int:
        """The session's own pool (nothing process-wide): `threads`, else the CPUs free now."""
        if self.threads is None:  # the thread policy (cnnkit.train.threads)
            from cnnkit.train.threads import settle_threads

            self.threads = settle_threads()[0]
        return self.threads

    # -- predictions -----------------------------------------------------------------------
    def predict(self, images) -> np.ndarray:
        """Probabilities (K,) for one image, (N, K) for a batch (numpy float32); images are
        anything `cnnkit.model.inputs` takes."""
        if self.runtime == "torch":
            from cnnkit.model.predict import predict_proba

            return predict_proba(self.model, images)
        from cnnkit.model.inputs import to_pixels
        from cnnkit.serve.onnx import run_session

        pixels, single = to_pixels(images, self.input_shape)  # uint8 (N, H, W, C)
        probs = run_session(self._session, pixels.numpy(), self._meta)
        return probs[0] if single else probs

    def top_k(self, image, k: int = 5) -> list[dict]:
        """The k most probable classes of one image, best first (ties: the lower index):
        [{"index": i, "class": name, "probability": p}, ...]; k past the class count is all."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise out_of_range("k", k, "an integer >= 1")
        probs = self.predict(image)
        if probs.ndim != 1:
            raise CnnkitError(f"top_k takes one image; received a batch of {len(probs)} "
                              "(use predict for a batch)")
        order = np.argsort(-probs, kind="stable")[:int(k)]
        return [{"index": int(i), "class": self.class_names[i], "probability": float(probs[i])}
                for i in order]

    # -- what it is ------------------------------------------------------------------------
    def card(self) -> dict:
        """What a page or an API shows about the model."""
        if self.model is not None:
            from cnnkit.model.summary import format_summary

            summary = format_summary(self.model)
            accuracy = run_test_accuracy(self.run_dir)
        else:
            summary = self._meta.get("summary")
            accuracy = self._meta.get("test_accuracy")
        return {"name": self.name, "summary": summary, "input_shape": list(self.input_shape),
                "classes": list(self.class_names), "test_accuracy": accuracy,
                "runtime": self.runtime}

    def __repr__(self):
        return (f"Predictor(name={self.name!r}, runtime={self.runtime!r}, "
                f"input_shape={self.input_shape}, classes={len(self.class_names)})")
