"""`cnnkit evaluate` and `cnnkit predict` on a saved model or a run directory."""
from __future__ import annotations

import json
import os
from pathlib import Path

from cnnkit.cli.flags import default_out
from cnnkit.errors import CnnkitError
from cnnkit.fsutil import kind_of, readable_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def check_model_dir(path) -> None:
    """MODEL_OR_RUN is any model reference (cnnkit.model.resolve): a file its prefix or suffix
    names must be readable, a folder must be one, an unknown name is refused, all before
    anything loads."""
    from cnnkit.model.resolve import named_kind, parse_reference

    kind = named_kind(str(path))
    files = {"file": "model file", "keras": "Keras model file", "onnx": "ONNX model file"}
    if kind in files:
        readable_file(Path(parse_reference(path).target), files[kind])
        return
    p = Path(parse_reference(path).target if kind else path)
    if kind is None and not p.exists() and not p.is_symlink() and os.sep not in str(path):
        parse_reference(path)  # a preset's name; anything else is named as unknown here
        return
    if not p.exists():  # a permission error is raised: the CLI says so
        raise CnnkitError(f"{p}: no such run or saved model directory")
    if not p.is_dir():
        raise CnnkitError(f"{p}: is a {kind_of(os.stat(p).st_mode)}, not a run or saved model "
                          "directory")
    parse_reference(path)  # a folder that is neither a run nor a saved model is named here


def check_out(flag: str, path, folder: bool) -> None:
    """An --out or --plot that already exists must be what will be written there: found now,
    not after minutes of work."""
    if path is None or not Path(path).exists():
        return
    kind, want = kind_of(os.stat(path).st_mode), "folder" if folder else "file"
    if kind != want:
        raise CnnkitError(f"{flag} {path} is a {kind}, not a {want}; choose another {flag}")


def check_runtime(runtime: str) -> None:
    from cnnkit.serve.predictor import RUNTIMES

    if runtime not in RUNTIMES:
        raise CnnkitError(f"unknown --runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")


def evaluate_command(args) -> int:
    from cnnkit.look.metrics import format_report
    from cnnkit.runs.evaluate import evaluate
    from cnnkit.runs.report import evaluation_plots

    check_runtime(args.runtime)
    check_model_dir(args.model)
    check_out("--out", args.out, folder=True)
    ev = evaluate(args.model, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                  device=args.device, runtime=args.runtime, threads=args.threads)
    run_dir = ev.run_dir
    out = Path(args.out) if args.out else (run_dir / f"evaluate-{args.split}" if run_dir
                                           else default_out("evaluate", args.model))
    evaluation_plots(out, ev.x, ev.y, ev.probs, ev.report, ev.class_names)
    if args.json:
        print(json.dumps(ev.report | {"dataset": ev.dataset, "split": args.split,
                                      "runtime": ev.runtime,
                                      "images": {"confusion_matrix": str(out / "confusion_matrix.png"),
                                                 "mistakes": str(out / "mistakes.png"),
                                                 "reliability": str(out / "reliability.png")}},
                         indent=2))
    else:
        print(f"{ev.dataset} {args.split}: {len(ev.y):,} images ({ev.runtime} runtime)")
        print(format_report(ev.report))
        print(f"Confusion matrix: {out / 'confusion_matrix.png'}; most confident mistakes: "
              f"{out / 'mistakes.png'}; reliability diagram: {out / 'reliability.png'}")
    return 0


def image_paths(items: list[str]) -> list[Path]:
    paths = []
    for item in items:
        p = Path(item)
        if not p.exists():
            raise CnnkitError(f"{p}: no such file or folder")
        if p.is_dir():  # regular files only: no FIFO (reading it would wait), no folder x.png
            found = sorted(f for f in p.rglob("*")
                           if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise CnnkitError(f"{p}: no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        else:
            paths.append(readable_file(p, "image file"))  # a FIFO, a device, unreadable
    return paths


def readable_images(paths: list[Path], input_shape):
    """(uint8 (N, H, W, C) at `input_shape`, the paths read): each file through the input
    contract; unreadable ones are skipped and named on stderr, as a folder dataset skips them.
    None readable is an error naming the first."""
    import sys

    import torch

    from cnnkit.data.folder import skipped_text
    from cnnkit.model.inputs import to_pixels

    read, good, bad = [], [], {}
    for path in paths:
        try:
            read.append(to_pixels(path, input_shape)[0])
            good.append(path)
        except CnnkitError as e:
            bad[str(path)] = str(e)
    if not good:
        raise CnnkitError(next(iter(bad.values())) if len(bad) == 1 else
                          f"none of the {len(bad):,} images could be read; the first: "
                          f"{next(iter(bad.values()))}")
    if bad:
        print(f"cnnkit: warning: skipped {skipped_text(list(bad))}", file=sys.stderr)
    return torch.cat(read), good


def csv_table(items: list[str]) -> Path | None:
    """The CSV file of pixel rows that predict was given (alone), or None for images."""
    tables = [i for i in items if i.lower().endswith(".csv") or i.startswith("csv:")]
    if not tables:
        return None
    if len(items) > 1:
        raise CnnkitError(f"{tables[0]}: a CSV of pixel rows is predicted on its own; valid: "
                          "one CSV file, or image files and folders")
    return Path(tables[0][4:] if tables[0].startswith("csv:") else tables[0])


def csv_rows(table: Path):
    import torch

    from cnnkit.data.csv import csv_images

    return torch.from_numpy(csv_images(table))


def write_submission(path, predicted, names) -> None:
    """Kaggle's answer file: `ImageId,Label`, one row per image from ImageId 1, the label the
    predicted class's name (a digit for a model trained on labels 0-9)."""
    from cnnkit.fsutil import atomic_write_text

    lines = ["ImageId,Label"] + [f"{i},{names[k]}" for i, k in enumerate(predicted, 1)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def predict_command(args) -> int:
    import numpy as np

    from cnnkit.errors import printable
    from cnnkit.model.resolve import is_onnx_file, open_model
    from cnnkit.serve.predictor import Predictor, auto_runtime

    if args.top_k < 1:
        raise CnnkitError(f"--top-k {args.top_k} is out of range; valid: 1 or more")
    check_runtime(args.runtime)
    check_model_dir(args.model)
    check_out("--plot", args.plot, folder=False)
    check_out("--submission", args.submission, folder=False)
    table = csv_table(args.images)
    rows = csv_rows(table) if table else None  # (N, S, S, C) uint8: a CSV's rows are images
    paths = image_paths(args.images) if table is None else []
    if is_onnx_file(args.model):
        predictor = Predictor(args.model, runtime=args.runtime, threads=args.threads)
    else:
        model, _ = open_model(args.model)
        predictor = Predictor(model, runtime=auto_runtime(args.runtime, len(rows if table else
                                                                              paths)),
                              threads=args.threads)
    if table is None:
        pixels, paths = readable_images(paths, predictor.input_shape)  # (N, H, W, C)
    else:
        from cnnkit.model.inputs import to_pixels

        pixels = to_pixels(rows, predictor.input_shape)[0]
        paths = [Path(f"{table} row {i}") for i in range(1, len(pixels) + 1)]
    probs = predictor.predict(pixels)  # (N, K): two columns for a 1-unit sigmoid model
    images = pixels.numpy()
    names = predictor.class_names
    if args.submission:
        write_submission(args.submission, probs.argmax(axis=1), names)
    # An image in a folder named after one of the model's classes (data/test/cat/1.jpg, as a
    # folder dataset is laid out) is labelled with that class: the plot shows right and wrong.
    own = predictor.model.class_names if predictor.model is not None else predictor.class_names
    index = {c: i for i, c in enumerate(own or [])}
    true = [index.get(printable(path.parent.name)) if table is None else None
            for path in paths]  # as folder: names it
    k = min(args.top_k, probs.shape[1])
    results = []
    for path, p, label in zip(paths, probs, true):
        top = np.argsort(-p, kind="stable")[:k]
        results.append({"image": str(path), "top": [{"class": names[i], "index": int(i),
                                                      "probability": float(p[i])} for i in top]}
                       | ({} if label is None else {"true": names[label]}))
    labelled = [(int(p.argmax()), t) for p, t in zip(probs, true) if t is not None]
    if args.plot:
        from cnnkit.look import plots

        plots.plot_probabilities(images, probs, names, args.plot, top_k=None,
                                 true=true if labelled else None,
                                 files=[printable(p.name) for p in paths])
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.submission:  # a Kaggle answer: the file, not a line per image
        print(f"Submission: {args.submission} ({len(results):,} predictions, ImageId 1 to "
              f"{len(results):,})")
    else:
        for r in results:
            tops = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
            print(f"{printable(r['image'])}: {tops}"
                  + (f"  (true {r['true']})" if "true" in r else ""))
        if labelled:
            right = sum(pred == t for pred, t in labelled)
            print(f"Right: {right} of {len(labelled)} labelled images")
        if args.plot:
            print(f"Probabilities: {args.plot}")
    return 0
