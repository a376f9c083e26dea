"""The parity check behind `cnnkit export`: onnxruntime's probabilities beside PyTorch's.

The images: the model's test split (a run's own held-out split; all 10,000 for the MNIST
family; the whole dataset where it has no test split), or 1,000 random images when the model
records no dataset, plus all-black, all-white and noise images. The figures: max |Δp| over
every image and class, and top-1 agreement. A top-1 difference where PyTorch's own
probabilities of the two classes tie within the tolerance is counted apart, as a tie: an
untrained model's flat outputs tie exactly, and which of two equal classes comes first is
rounding, not a disagreement. Past the tolerance, or on any other disagreement, one
CnnkitError line names the worst image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.serve.onnx import TOLERANCE

RANDOM_IMAGES = 1000  # parity images when the model records no dataset


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime matched PyTorch."""

    path: Path
    opset: int
    batch: str
    exporter: str
    bytes: int
    export_s: float
    images: str  # where the parity images came from
    checked: int = 0  # images compared (the split's and the edge images)
    max_abs_diff: float | None = None  # max |Δp| over every image and class
    top1_agree: int = 0
    ties: int = 0  # top-1 differences where the top two classes tie within the tolerance
    edges: dict = field(default_factory=dict)  # edge image -> max |Δp|
    tolerance: float = TOLERANCE
    quantized: object = None  # a serve.quantize.QuantReport under --quantize

    @property
    def top1_agreement(self) -> float | None:
        return self.top1_agree / self.checked if self.checked else None

    def text(self) -> str:
        kind = f"{self.quantized.mode}, " if self.quantized is not None else ""
        lines = [f"Wrote {self.path} ({self.bytes / 1024:,.0f} KiB, {kind}opset {self.opset}, "
                 f"batch {self.batch}, {self.exporter} exporter, {self.export_s:.2f} s)"]
        if self.max_abs_diff is None:
            return lines[0] + "\nParity not checked"
        agree = f"{self.top1_agree:,} of {self.checked:,} ({100 * self.top1_agreement:.2f}%)"
        tie = f", {self.ties} more where the top two tie within {self.tolerance:g}" if self.ties else ""
        edges = ", ".join(f"{k} {v:.1e}" for k, v in self.edges.items())
        graph = " (the fp32 graph)" if self.quantized is not None else ""
        lines += [f"Parity{graph}, onnxruntime vs PyTorch, on {self.images} + {len(self.edges)} edge images:",
                  f"  max |Δ probability| {self.max_abs_diff:.2e} (tolerance {self.tolerance:g})",
                  f"  top-1 agreement {agree}{tie}",
                  f"  edge images: {edges}"]
        if self.quantized is not None:
            lines.append(self.quantized.text())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "opset": self.opset, "batch": self.batch,
                "exporter": self.exporter, "bytes": self.bytes, "export_s": self.export_s,
                "images": self.images, "checked": self.checked,
                "max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement,
                "ties": self.ties, "edges": self.edges, "tolerance": self.tolerance,
                "quantized": None if self.quantized is None else self.quantized.to_dict()}


def edge_images(input_shape, seed: int = 0) -> dict:
    """All-black, all-white and uniform-noise uint8 images (1, H, W, C)."""
    import torch

    h, w, c = input_shape
    g = torch.Generator().manual_seed(seed)
    return {"all-black": torch.zeros((1, h, w, c), dtype=torch.uint8),
            "all-white": torch.full((1, h, w, c), 255, dtype=torch.uint8),
            "noise": torch.randint(0, 256, (1, h, w, c), dtype=torch.uint8, generator=g)}


def parity_images(model, run_dir, dataset=None, data_dir=None):
    """(description, uint8 (N, H, W, C), class names or None, labels or None) to compare the
    runtimes on; the labels are None for random images."""
    import torch

    from cnnkit.runs.evaluate import split_data

    if dataset or getattr(model, "dataset", None):
        name, ds, x, y = split_data(model.name, model.input_shape, model.dataset, run_dir,
                                    dataset, data_dir, "test", or_train=True)
        if run_dir is not None and not dataset:
            where = f"the run's test split ({len(x):,} images)"
        elif ds.has_test:
            where = f"{name} test ({len(x):,} images)"
        else:
            where = f"{name} ({len(x):,} images; it has no test split)"
        return where, x, ds.class_names, y
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (RANDOM_IMAGES, *model.input_shape), dtype=torch.uint8, generator=g)
    return f"{RANDOM_IMAGES:,} random images (the model records no dataset)", x, None, None


def compare(model, session, meta, images: dict, tolerance: float):
    """Max |Δp|, top-1 agreement and ties of onnxruntime against `predict_proba`, per set of
    images in `images` {label: uint8 (N, H, W, C)}; (worst label, index) for the message."""
    from cnnkit.model.predict import predict_proba
    from cnnkit.serve.onnx import run_session

    out = {}
    for label, x in images.items():
        want = predict_proba(model, x)  # (N, K): PyTorch, fp32, eval mode
        got = run_session(session, x.numpy(), meta)
        diff = np.abs(got - want)  # (N, K)
        rows = np.arange(len(want))
        top_t, top_o = want.argmax(1), got.argmax(1)
        differ = top_t != top_o
        # the same top class unless torch's own probabilities of the two tie within tolerance
        tie = differ & (want[rows, top_t] - want[rows, top_o] <= tolerance)
        out[label] = {"max": float(diff.max()), "worst": int(diff.max(1).argmax()),
                      "n": len(want), "agree": int((~differ).sum()), "ties": int(tie.sum()),
                      "disagree": int((differ & ~tie).sum()),
                      "first_disagree": int(np.argmax(differ & ~tie))}
    return out


def check_parity(report, model, session, meta, where, x, tolerance) -> None:
    """Fill in the report's parity figures; one CnnkitError line past the tolerance."""
    images = {"split": x, **edge_images(model.input_shape)}
    result = compare(model, session, meta, images, tolerance)
    report.images = where
    report.checked = sum(r["n"] for r in result.values())
    report.max_abs_diff = max(r["max"] for r in result.values())
    report.top1_agree = sum(r["agree"] for r in result.values())
    report.ties = sum(r["ties"] for r in result.values())
    report.edges = {k: r["max"] for k, r in result.items() if k != "split"}
    worst = max(result, key=lambda k: result[k]["max"])
    wrong = {k: r for k, r in result.items() if r["disagree"]}

    def label(k, i):
        return f"image {i} of {where}" if k == "split" else f"the {k} image"

    if report.max_abs_diff > tolerance or wrong:
        parts = [f"max |Δp| {report.max_abs_diff:.2e} at {label(worst, result[worst]['worst'])}"
                 f" (tolerance {tolerance:g})"]
        if wrong:
            k = next(iter(wrong))
            count = sum(r["disagree"] for r in wrong.values())
            parts.append(f"{count} top-1 disagreement{'s' * (count != 1)}, first at "
                         f"{label(k, wrong[k]['first_disagree'])}")
        raise CnnkitError(f"{report.path}: onnxruntime does not match PyTorch: "
                          f"{'; '.join(parts)}; nothing written")


def verify_onnx(model_or_run, onnx_path, dataset: str | None = None, data_dir=None,
                tolerance: float = TOLERANCE, threads: int | None = None) -> ExportReport:
    """The same parity check on an .onnx file already written (one copied, or edited)."""
    from cnnkit.model.resolve import open_model
    from cnnkit.serve.onnx import check_options, open_session

    check_options(None, "dynamic", "torchscript", tolerance)
    model, run_dir = open_model(model_or_run)
    session, meta = open_session(onnx_path, threads)
    if tuple(meta["input_shape"]) != tuple(model.input_shape):
        raise CnnkitError(f"{onnx_path}: input shape {meta['input_shape']} is not the model's "
                          f"{tuple(model.input_shape)}")
    import onnx

    where, x, _, _ = parity_images(model, run_dir, dataset, data_dir)
    proto = onnx.load(str(onnx_path))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    report = ExportReport(Path(onnx_path), opset, "1" if meta["fixed_batch"] else "dynamic",
                          proto.producer_name or "?", Path(onnx_path).stat().st_size, 0.0,
                          where, tolerance=float(tolerance))
    check_parity(report, model, session, meta, where, x, tolerance)
    return report
