"""`cnnkit export`: a model as an ONNX file for onnxruntime, checked against PyTorch."""
from __future__ import annotations

FORMATS = ("onnx", "web")


def register(sub) -> None:
    from cnnkit.cli import flags

    p = sub.add_parser(
        "export", help="write an ONNX file (checked against PyTorch) for onnxruntime",
        description="Export a model to ONNX. The graph takes uint8 pixels (N, H, W, C), 0..255, "
                    "and returns class probabilities (N, K); the model's preprocessing and "
                    "test-time flip are inside it, and its metadata carries the class names, "
                    "input shape and preprocessing, so onnxruntime alone can use the file. "
                    "Before writing, onnxruntime's probabilities are compared with PyTorch's on "
                    "the model's test split (a run's own; all 10,000 images for the MNIST "
                    "family) and on all-black, all-white and noise images; past --tolerance, "
                    "or on any top-1 disagreement, nothing is written and the exit status is 2.")
    flags.add(p, "MODEL_OR_RUN")
    p.add_argument("--format", default="onnx",
                   help="onnx, or web: a folder (index.html, model.onnx, onnxruntime-web) that "
                        "any static host serves and that classifies in the browser, with no "
                        "server (default: onnx)")
    p.add_argument("--out", metavar="FILE|DIR",
                   help="the file to write, or the site's new folder with --format web "
                        "(required)")
    p.add_argument("--opset", metavar="N",
                   help="ONNX opset: 10..20 with the torchscript exporter (default 17), "
                        "18..23 with dynamo (default 18)")
    p.add_argument("--batch", default="dynamic",
                   help="dynamic (any number of images per call) or 1 (default: dynamic)")
    p.add_argument("--exporter", default="torchscript",
                   help="torchscript or dynamo: torch.onnx's two exporters; both match "
                        "PyTorch to ~1e-7 (default: torchscript, 30x faster to export)")
    flags.add(p, "--dataset", ", whose test split checks parity (default: the run's test split, "
              "or the model's dataset; 1,000 random images if it has none)")
    flags.add(p, "--data-dir")
    p.add_argument("--tolerance", default="1e-4", metavar="T",
                   help="largest |Δ probability| allowed between onnxruntime and PyTorch "
                        "(default: 1e-4)")
    flags.add(p, "--threads", ": onnxruntime intra-op threads for the check; auto: the CPUs "
              "this process may use (default: auto)", type=flags.threads)
    p.add_argument("--quantize", metavar="int8|fp16",
                   help="write a smaller graph: int8 (onnxruntime's static quantization, "
                        "per channel, calibrated on training images) or fp16; judged beside fp32 "
                        "on the whole test split (accuracy, size, one-image latency, images/s)")
    p.add_argument("--max-drop", default="0.5", metavar="POINTS",
                   help="with --quantize: the most test-accuracy points the smaller graph may "
                        "lose against fp32; past it nothing is written and the exit status is 2 "
                        "(default: 0.5)")
    p.add_argument("--calibration", default="512", metavar="N",
                   help="with --quantize int8: training images that set the activation ranges "
                        "(default: 512)")
    flags.add(p, "--json", " instead of the report's table", action="store_true")
    p.set_defaults(func=cmd_export)


def _number(flag: str, text, kind, valid: str):
    from cnnkit.errors import CnnkitError

    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise CnnkitError(f"{flag} {text} is out of range; valid: {valid}") from None


def cmd_export(args) -> int:
    import json

    from cnnkit.errors import CnnkitError, one_of

    if args.format not in FORMATS:
        raise one_of("format", args.format, FORMATS)
    if not args.out:
        raise CnnkitError("--out is required: the .onnx file to write (e.g. --out model.onnx), "
                          "or the site's folder with --format web (e.g. --out site/)")
    opset = _number("--opset", args.opset, int, "an integer (10..20 with the torchscript "
                    "exporter, 18..23 with dynamo)")
    tolerance = _number("--tolerance", args.tolerance, float, "a number >= 0")
    threads = _number("--threads", args.threads, int, "an integer >= 1")
    max_drop = _number("--max-drop", args.max_drop, float, "test-accuracy points from 0 to 100")
    calibration = _number("--calibration", args.calibration, int, "an integer >= 1")
    from cnnkit.serve.onnx import export_onnx
    from cnnkit.serve.web import export_web

    flags = {"opset": "--opset", "batch": "--batch", "exporter": "--exporter",
             "tolerance": "--tolerance", "threads": "--threads", "out": "--out",
             "quantize": "--quantize", "max_drop": "--max-drop", "calibration": "--calibration"}
    from cnnkit.train.progress import working

    export = export_web if args.format == "web" else export_onnx
    try:
        with working(f"Exporting {args.model} to {args.out} and checking it against the model"):
            report = export(args.model, args.out, opset=opset, batch=args.batch,
                            dataset=args.dataset, data_dir=args.data_dir, tolerance=tolerance,
                            exporter=args.exporter, threads=threads, quantize=args.quantize,
                            max_drop=max_drop, calibration=calibration)
    except CnnkitError as e:
        if getattr(e, "report", None) is not None:  # the gate refused: show what it measured
            print(json.dumps(e.report.to_dict(), indent=2) if args.json else e.report.text())
        raise e.restated(flags[e.option]) if e.option in flags else e
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0
