"""`cnnkit evaluate` and `cnnkit predict` on a saved model or a run directory."""
from __future__ import annotations

import json
from pathlib import Path

from cnnkit.errors import CnnkitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_model_or_run(spec: str):
    """(model, run_dir or None): a run directory gives its best model."""
    from cnnkit.model.saving import load

    path = Path(spec)
    if (path / "config.json").is_file() and (path / "best").is_dir():
        return load(path / "best"), path
    if (path / "config.json").is_file():
        raise CnnkitError(f"{path}: the run has no saved model yet (no completed epoch); "
                          f"continue it with cnnkit train --resume {path}")
    return load(path), None


def evaluate_command(args) -> int:
    import torch

    from cnnkit.data import load_dataset
    from cnnkit.look.metrics import classification_report, format_report
    from cnnkit.model.inputs import to_pixels
    from cnnkit.model.outputs import check_classes, probabilities
    from cnnkit.runs.report import evaluation_plots
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    model, run_dir = load_model_or_run(args.model)
    dataset = args.dataset or model.dataset
    if not dataset:
        raise CnnkitError(f"{args.model}: the model does not record its dataset; pass --dataset")
    h, w, c = model.input_shape
    if run_dir is not None and not args.dataset and args.split == "test":
        # the run's own test split (held out by the run where the dataset has none)
        from cnnkit.runs.run import prepare_data, read_run_config

        options = read_run_config(run_dir)
        ds, splits = prepare_data(options, model.input_shape
                                  if options["dataset"].startswith("folder:") else None)
        x, y = splits["test"]
    else:
        ds = load_dataset(dataset, data_dir=args.data_dir, channels=c, size=(h, w))
        if args.split == "test" and not ds.has_test:
            raise CnnkitError(f"{dataset} has no official test split; use --split train")
        x, y = (ds.x_test, ds.y_test) if args.split == "test" else (ds.x_train, ds.y_train)
    check_classes(model.output_shape[0], ds.num_classes, dataset)
    x = to_pixels(x, model.input_shape)[0]  # the input contract; a no-op at the model's shape
    # The Trainer's batched forward pass (device, precision) is the run's own: a run's test
    # accuracy and `cnnkit evaluate` of it agree to the last digit. It scales pixels with
    # to_model_input and the model's saved preprocessing, as cnnkit.model.inputs does.
    trainer = Trainer(model, TrainConfig(device=args.device, verbose=0,
                                         normalize=model.preprocessing.get("normalize", "unit")))
    with torch.inference_mode():
        probs = probabilities(trainer.predict_logits(x), model.net.output_activation).numpy()
    names = model.class_names or ds.class_names
    report = classification_report(probs, y.numpy(), names)
    out = Path(args.out) if args.out else (run_dir / f"evaluate-{args.split}" if run_dir
                                           else Path(f"evaluate-{Path(args.model).name}"))
    evaluation_plots(out, x, y, probs, report, names)
    if args.json:
        print(json.dumps(report | {"dataset": dataset, "split": args.split,
                                   "images": {"confusion_matrix": str(out / "confusion_matrix.png"),
                                              "mistakes": str(out / "mistakes.png")}}, indent=2))
    else:
        print(f"{dataset} {args.split}: {len(y):,} images")
        print(format_report(report))
        print(f"Confusion matrix: {out / 'confusion_matrix.png'}; most confident mistakes: "
              f"{out / 'mistakes.png'}")
    return 0


def image_paths(items: list[str]) -> list[Path]:
    paths = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CnnkitError(f"{p}: no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise CnnkitError(f"{p}: no such file or folder")
    return paths


def predict_command(args) -> int:
    import numpy as np

    from cnnkit.model.inputs import to_pixels

    if args.top_k < 1:
        raise CnnkitError(f"--top-k {args.top_k} is out of range; valid: 1 or more")
    model, _ = load_model_or_run(args.model)
    paths = image_paths(args.images)
    pixels, _ = to_pixels(paths, model.input_shape)  # (N, H, W, C): the input contract
    probs = model.predict(pixels)  # (N, K): two columns for a 1-unit sigmoid model
    images = pixels.numpy()
    names = model.class_names or [str(i) for i in range(probs.shape[1])]
    k = min(args.top_k, probs.shape[1])
    results = []
    for path, p in zip(paths, probs):
        top = np.argsort(-p, kind="stable")[:k]
        results.append({"image": str(path), "top": [{"class": names[i], "index": int(i),
                                                      "probability": float(p[i])} for i in top]})
    if args.plot:
        from cnnkit.look import plots

        plots.plot_probabilities(images, probs, names, args.plot, top_k=None)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            tops = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
            print(f"{r['image']}: {tops}")
        if args.plot:
            print(f"Probabilities: {args.plot}")
    return 0
