"""One run as one web page: `report.html`, self-contained (look/html_parts), beside report.md.

Pictures are drawn here from arrays (Pillow encodes them) rather than by matplotlib, which
takes 0.3 s for a confusion matrix and 0.8 s for probability bars: images at their own size,
enlarged by the browser (`image-rendering: pixelated`); tables and probability bars are HTML.
Only the training curves come from matplotlib: curves.png, which the run has already drawn.

The page draws what it is given (`render_report_html`): the runs stage reads the run directory
and hands over its config, history, metrics, model and the arrays `report_evidence` chose at
the end of the run (the best model's test predictions, the images shown), so drawing it again
(`cnnkit report RUN`, cnnkit.runs.pages) neither splits the data nor evaluates the model.
User strings (class names, paths, options) are all escaped.
"""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.look.checkup import checkup_section
from cnnkit.look.html_parts import (Raw, bars_svg, colormap, figure, img, mosaic, note, page,
                                     png_tag, table)

# A Fashion-MNIST run's page is ~0.2 MB, a digits run's ~0.1 MB: images are kept few and small
# to stay far below this, and the tests hold every page to it.
BUDGET_BYTES = 3 * 2**20
SAMPLE_CLASSES, SAMPLES_PER_CLASS = 20, 2  # the data's sample grid
MISTAKES, PREDICTIONS, CAM_IMAGES = 16, 6, 4
MAP_LAYERS, MAP_CHANNELS = 6, 16  # feature maps: first layers and channels shown
NUMBERED_CM = 30  # past this many classes the confusion matrix cells hold colour only


def report_evidence(splits, probs, num_classes: int) -> dict[str, np.ndarray]:
    """What the page shows of a run's data and of its model's test predictions, as arrays (the
    run keeps them beside its best model, so the page is drawn again without the data): test
    probabilities and labels, the few test images shown, class counts per split, the sample
    of training images."""
    import torch

    from cnnkit.data.rows import as_array, take
    from cnnkit.look.metrics import worst_mistakes

    x_test, y = splits["test"][0], np.asarray(splits["test"][1])
    probs = np.asarray(probs)
    shown = sorted({w[0] for w in worst_mistakes(probs, y, k=MISTAKES)} | set(_picks(len(y))))
    x, y_train = splits["train"]
    samples = [i for c in range(min(num_classes, SAMPLE_CLASSES))
               for i in torch.nonzero(y_train == c).flatten()[:SAMPLES_PER_CLASS].tolist()]

    def gather(images, idx: list[int]) -> np.ndarray:  # (n, H, W, C): a mapped set's too
        rows = as_array(take(images, torch.as_tensor(idx, dtype=torch.long)))
        return np.asarray(rows[np.arange(len(idx))])

    out = {"probs": probs, "labels": y, "shown": np.asarray(shown, dtype=np.int64),
           "shown_images": gather(x_test, shown), "samples": gather(x, samples),
           "sample_labels": np.asarray(y_train)[samples],
           "val_is_test": np.asarray(splits["val"] is not None and splits["val"] is splits["test"])}
    for name, split in splits.items():
        if split is not None:
            out[f"counts_{name}"] = np.bincount(np.asarray(split[1]), minlength=num_classes)
    return out


def _picks(n: int) -> list[int]:
    """The test images shown with their predictions: spread evenly over the split."""
    return [int(i) for i in np.linspace(0, n - 1, min(PREDICTIONS, n))]


def render_report_html(title: str, where: Path, model, config: dict, history: dict,
                       metrics: dict | None, curves: bytes | None, evidence: dict,
                       reliability: bytes | None = None) -> str:
    """The page of one run, from what the run holds: its config.json, history (columns),
    metrics.json (None while unfinished), curves.png's bytes, the model, `evidence`
    (report_evidence) and reliability.png's bytes (None: drawn here from `evidence`)."""
    from cnnkit.look.metrics import classification_report

    dataset = config["resolved"]["dataset"]
    names = list(dataset["class_names"])
    y = evidence["labels"]
    report = classification_report(evidence["probs"], y, names)
    x = dict(zip(evidence["shown"].tolist(), evidence["shown_images"]))  # x[i]: a shown image
    picks = _picks(len(y))
    model_part = model_section
    if getattr(model, "foreign", False):  # your own nn.Module: no cnnkit layer description
        from cnnkit.look.html_module import module_section as model_part
    sections = [
        ("data", "Data", data_section(dataset, evidence)),
        ("model", "Model", model_part(model, config)),
        ("training", "Training", training_section(curves, history, config["options"],
                                                  metrics or {})),
        ("results", "Test results", results_section(report, x, y, evidence["probs"], picks,
                                                              reliability)),
        ("inside", "Inside the model", inside_section(model, x, y, names, picks[:CAM_IMAGES])),
        ("doctor", "Doctor", checkup_section(config["resolved"].get("ran_on"),
                                             (metrics or {}).get("doctor"))),
    ]
    return page(title, where, headline(report, metrics or {}), sections)


# -- pieces of HTML ----------------------------------------------------------------------------
def headline(report: dict, metrics: dict) -> str:
    facts = [f"test accuracy <b>{report['accuracy']:.4f}</b>", f"test loss {report['loss']:.4f}"]
    facts.append(f"balanced accuracy {report['balanced_accuracy']:.4f}, macro-F1 "
                 f"{report['macro_f1']:.4f}")
    if metrics:
        facts.append(f"model of epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
                     + ("" if metrics.get("best_val_loss") is not None else
                        " (the last: no validation)"))
        result = (f" (the test result after {metrics['result_time_s']:.1f} s)"
                  if metrics.get("result_time_s") is not None else "")
        facts.append(f"{metrics['wall_time_s']:.1f} s in all{result}, on "
                     f"{escape(metrics['device'])} ({escape(metrics['precision'])})")
        if metrics.get("stop_reason"):
            facts.append(f"stopped: {escape(metrics['stop_reason'])}")
    else:
        facts.append("the run has not finished (no metrics.json): its best model so far")
    return '<p class="headline">' + " · ".join(facts) + "</p>"


def data_section(dataset: dict, evidence: dict) -> str:
    """`dataset`: config.json's resolved.dataset; `evidence`: report_evidence's arrays."""
    names = dataset["class_names"]
    k = len(names)
    counts = {s: evidence[f"counts_{s}"].tolist() for s in ("train", "val", "test")
              if f"counts_{s}" in evidence}
    facts = [["dataset", dataset["name"]], ["source", dataset.get("source") or "—"],
             ["images", "×".join(map(str, dataset["image_shape"])) + " (H×W×C), uint8"],
             ["classes", k], *[[f"{s} images", f"{sum(counts.get(s, [])):,}"]
                               for s in ("train", "val", "test")]]
    val_is_test = bool(evidence["val_is_test"])
    if val_is_test:
        facts.append(["note", "validation is on the test split (val_from_test)"])
    shown = [s for s in counts if not (s == "val" and val_is_test)]
    count_rows = [[name] + [counts[s][i] for s in shown] for i, name in enumerate(names)]
    samples = [figure(img(image, f"a training image of {names[c]}"), names[c])
               for image, c in zip(evidence["samples"], evidence["sample_labels"].tolist())]
    more = note(f"the first {SAMPLE_CLASSES} of {k} classes") if k > SAMPLE_CLASSES else ""
    return ('<div class="row">' + table(["", ""], facts, "facts")
            + "<div><h3>Images per class</h3>" + table(["class"] + shown, count_rows, "num")
            + "</div></div><h3>Training images</h3>"
            + f'<div class="grid">{"".join(samples)}</div>{more}')


def model_section(model, config: dict) -> str:
    d = model.summary_dict()
    graph = any("connected_to" in l for l in d["layers"])  # a graph: Keras's "Connected to"
    rows = [[f"{l['name']} ({l['type']})", "(None, " + ", ".join(map(str, l["output_shape"])) + ")",
             f"{l['params']:,}", f"{l['macs']:,}"] + ([", ".join(l["connected_to"]) or "-"]
                                                      if graph else []) for l in d["layers"]]
    rows.append([Raw("<b>total</b>"), "", f"{d['total_params']:,}", f"{d['total_macs']:,}"]
                + ([""] if graph else []))
    out = ['<div class="row"><div class="side">',
           table(["layer (type)", "output shape", "params", "MACs"]
                 + (["connected to"] if graph else []), rows, "num summary"),
           note(f"input {tuple(d['input_shape'])}; {d['trainable_params']:,} trainable, "
                f"{d['non_trainable_params']:,} non-trainable parameters; "
                f"{d['memory_bytes'] / 1024:.1f} KiB of float32 weights")]
    model_note = (config.get("resolved") or {}).get("model_note")
    if model_note:
        out.append(note(model_note))
    from cnnkit.look.diagram import model_svg

    out.append(f'</div><div><h3>Diagram</h3><div class="diagram">{model_svg(model)}</div>')
    return "".join(out) + "</div></div>"


def training_section(curves: bytes | None, history: dict, options: dict, metrics: dict) -> str:
    """`curves`: curves.png, drawn at the end of the run (None: not drawn yet)."""
    out = []
    if curves:
        data = curves
    elif history.get("loss"):  # a run stopped before its end: drawn here, in memory
        import tempfile

        from cnnkit.look.plots import plot_history

        with tempfile.TemporaryDirectory() as tmp:
            data = plot_history({k: v for k, v in history.items() if k != "epoch"},
                                Path(tmp) / "curves.png").read_bytes()
    else:
        data = None
    if data:
        out.append(png_tag(data, "loss and accuracy per epoch"))
    epochs = len(history.get("loss", []))
    if epochs:
        out.append('<div class="row">' + bars_svg(history.get("lr", []), "learning rate", "{:.3g}")
                   + bars_svg(history.get("time", []), "seconds per epoch", "{:.2f}") + "</div>")
        cols = [c for c in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")
                if c in history]
        rows = [[i + 1] + ["—" if history[c][i] is None else f"{history[c][i]:.4g}" for c in cols]
                for i in range(epochs)]
        out.append(f"<details{' open' if epochs <= 20 else ''}><summary>per epoch</summary>"
                   + table(["epoch"] + cols, rows, "num") + "</details>")
    if metrics.get("phases"):  # a backbone's fine-tuning: what was frozen when
        from cnnkit.train.phases import PHASE_COLUMNS, phase_rows

        out.append("<h3>Fine-tuning phases</h3>" + table(PHASE_COLUMNS, phase_rows(
            metrics["phases"])) + (note("The pretrained backbone's batch norm runs in inference "
                                        "mode throughout: its moving statistics stay as loaded.")
                                   if options.get("weights") != "none" else ""))
    if metrics.get("samples_per_s"):
        out.append(note(f"{metrics['train_time_s']:.1f} s training, "
                        f"{metrics['samples_per_s']:,.0f} samples/s"))
    flat = [(k, v) for k, v in options.items() if k != "train"] + list(options["train"].items())
    out.append('<h3>Options of the run</h3><dl class="options">' + "".join(
        f"<div><dt>{escape(k)}</dt><dd>{escape(option_text(v))}</dd></div>" for k, v in flat)
        + "</dl>")
    return "".join(out)


def option_text(value) -> str:
    if value is None:
        return "—"
    return json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)


def results_section(report: dict, x, y, probs, picks: list[int],
                    reliability: bytes | None = None) -> str:
    from cnnkit.look.metrics import calibration_text, worst_mistakes

    names = report["class_names"]
    rows = [[c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}",
             c["support"]] for c in report["per_class"]]
    for label in ("macro_avg", "weighted_avg"):
        m = report[label]
        rows.append([Raw(f"<b>{label.replace('_', ' ')}</b>"), f"{m['precision']:.4f}",
                     f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]])
    out = [table(["class", "precision", "recall", "f1", "support"], rows, "num"),
           "<h3>Confusion matrix</h3>", note("rows: true class; columns: predicted class"),
           confusion_table(report["confusion_matrix"], names, False),
           "<h3>Confusion matrix, each row divided by its count (recall on the diagonal)</h3>",
           confusion_table(report["confusion_matrix"], names, True),
           "<h3>Calibration</h3>", note(calibration_text(report) + ": each bar is a confidence "
                                        "bin's accuracy; a calibrated model's bars reach the "
                                        "diagonal"),
           png_tag(reliability or _reliability_png(report), "reliability diagram"),
           "<h3>Most confident mistakes</h3>"]
    worst = worst_mistakes(probs, y, k=MISTAKES)
    out.append(('<div class="grid">' + "".join(
        figure(img(x[i], f"a {names[t]} taken for {names[p]}"),
               f"{names[t]} → {names[p]} ({c:.2f})")
        for i, t, p, c in worst) + "</div>") if worst else note("no misclassified test images"))
    out.append("<h3>Sample predictions</h3>" + note(
        "the five most probable classes: the prediction blue when right, red when wrong; "
        "the true class green"))
    out.append('<div class="preds">' + "".join(prediction(x[i], int(y[i]), probs[i], names)
                                               for i in picks) + "</div>")
    return "".join(out)


def _reliability_png(report: dict) -> bytes:
    """reliability.png drawn in memory: a run stopped before its end has none."""
    import tempfile

    from cnnkit.look.plots import plot_reliability

    with tempfile.TemporaryDirectory() as tmp:
        return plot_reliability(report, Path(tmp) / "reliability.png").read_bytes()


def confusion_table(cm, names: list[str], normalize: bool) -> str:
    """Rows true class, columns predicted, each cell shaded by its share of the row's maximum
    scale (counts: the largest cell; normalized: 1)."""
    cm = np.asarray(cm, dtype=float)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    k = len(names)
    top = 1.0 if normalize else max(cm.max(), 1.0)
    by_name = k <= 12  # longer lists number the columns, as the text report does
    head = [""] + [n if by_name else str(j) for j, n in enumerate(names)]
    rows = []
    for i, row in enumerate(cm):
        cells = [Raw(escape(names[i] if by_name else f"{i} {names[i]}"))]
        for j, v in enumerate(row):
            a = v / top
            text = "" if k > NUMBERED_CM else f"{v:.2f}" if normalize else f"{v:.0f}"
            cells.append(Raw(f'<span style="background:rgba(31,119,180,{a:.3f});'
                             f'color:{"#fff" if a > 0.5 else "#222"}"'
                             f'{" class=diag" if i == j else ""} title="{escape(names[i])} → '
                             f'{escape(names[j])}: {v:.4g}">{text}</span>'))
        rows.append(cells)
    return table(head, rows, "cm")


def prediction(image, true: int, p, names: list[str]) -> str:
    """One test image and its five most probable classes as bars."""
    pred = int(np.argmax(p))
    bars = []
    for c in np.argsort(-p, kind="stable")[:5]:
        kind = ("right" if c == true else "wrong") if c == pred else "true" if c == true else ""
        bars.append(f'<div class="bar {kind}"><span class="label">{escape(names[c])}</span>'
                    f'<span class="track"><span style="width:{100 * p[c]:.1f}%"></span></span>'
                    f'<span class="value">{p[c]:.2f}</span></div>')
    alt = f"a {names[true]}, predicted {names[pred]}"
    return (f'<div class="pred">{figure(img(image, alt, 72), f"true {names[true]}")}'
            f'<div class="bars">{"".join(bars)}</div></div>')


def inside_section(model, x, y, names: list[str], picks: list[int]) -> str:
    """First-layer filters, feature maps of one test image, Grad-CAM. Your own nn.Module has
    no layer description: its filters and maps come through its own nn.Conv2d (and pooling)
    submodules (look/html_module), and Grad-CAM is left out, saying why."""
    from cnnkit.look import html_module, inside

    foreign = getattr(model, "foreign", False)
    out = ["<h3>First-layer filters</h3>"]
    try:
        kernels = (html_module.first_conv_kernels(model.module) if foreign else  # (out, in, kh, kw)
                   np.asarray(inside.first_layer_filters(model)).transpose(3, 2, 0, 1))
        out.append(note("the module has no nn.Conv2d, so no filters") if kernels is None
                   else filters_img(kernels))
    except CnnkitError as e:  # e.g. a model with no convolution
        out.append(note(str(e)))
    i = picks[0]
    out.append(f"<h3>Feature maps of one test image ({escape(names[int(y[i])])})</h3>")
    try:
        layers = None if foreign else mapped_layers(model)
        maps = (html_module.module_feature_maps(model, x[i]) if foreign else
                inside.feature_maps(model, x[i], layers=layers) if layers else {})
        out.append(figure(img(x[i], "the test image", 96), "input")
                   + "".join(feature_map_img(name, np.asarray(m)) for name, m in maps.items())
                   + ("" if maps else note("the module has no nn.Conv2d or pooling submodule, "
                                           "so no feature maps" if foreign else "the model has "
                                           "no convolution or pooling, so no feature maps")))
    except CnnkitError as e:
        out.append(note(str(e)))
    if foreign:
        return "".join(out) + "<h3>Grad-CAM</h3>" + note(html_module.NO_CAM)
    out.append("<h3>Grad-CAM: where the predicted class was seen</h3>" + note(
        "at the last Conv2D. Where Grad-CAM is 0 everywhere (common after a Flatten head, "
        "whose gradients average out over the map) the picture shows HiResCAM instead, which "
        "weights each position by its own gradient"))
    try:
        cams = [grad_cam_figure(x[i], *_cam(inside, model, x[i]), names, int(y[i]))
                for i in picks]
        out.append('<div class="grid">' + "".join(cams) + "</div>")
    except CnnkitError as e:
        out.append(note(str(e)))
    return "".join(out)


def mapped_layers(model) -> list[str]:
    """The first convolutions and poolings: their outputs are the maps worth a look (a
    Dropout or BatchNormalization output is much the same picture again)."""
    from cnnkit.look.inside import is_convolution

    pools = ("MaxPooling2D", "AveragePooling2D")
    return [i.name for i in model.layer_infos()
            if is_convolution(i.layer) or i.layer.type in pools][:MAP_LAYERS]


def filters_img(w: np.ndarray) -> str:
    """Kernels (out, in, kh, kw): RGB ones in colour, each on its own range; others (the mean
    over input channels) on one blue-white-red scale centred on 0, comparable across filters."""
    n, cin = w.shape[:2]
    if cin == 3:
        t = w.transpose(0, 2, 3, 1)
        lo, hi = t.min(axis=(1, 2, 3), keepdims=True), t.max(axis=(1, 2, 3), keepdims=True)
        tiles = ((t - lo) / np.maximum(hi - lo, 1e-12) * 255).astype(np.uint8)
    else:
        t = w[:, 0] if cin == 1 else w.mean(axis=1)
        top = max(float(np.abs(t).max()), 1e-12)
        tiles = colormap("bwr")[((t / top + 1) * 127.5).astype(int)]
    grid = mosaic(tiles, math.ceil(math.sqrt(n)))
    return figure(img(grid, "first-layer filters", 240),
                  f"{n} filters, {w.shape[2]}×{w.shape[3]}"
                  + ("" if cin in (1, 3) else f", mean over {cin} input channels"))


def feature_map_img(name: str, maps: np.ndarray) -> str:
    """One layer's (H, W, C) output: each channel standardized on its own, so a weak but
    structured response shows as well as a strong one."""
    h, w, c = maps.shape
    m = maps[..., :MAP_CHANNELS].transpose(2, 0, 1)  # (C, H, W)
    m = (m - m.mean(axis=(1, 2), keepdims=True)) / (m.std(axis=(1, 2), keepdims=True) + 1e-5)
    tiles = colormap("viridis")[np.clip(m * 64 + 128, 0, 255).astype(int)]
    shown = f", first {MAP_CHANNELS}" if c > MAP_CHANNELS else ""
    return figure(img(mosaic(tiles, min(len(tiles), 4)), f"feature maps of {name}", 192),
                  f"{name}: {c} maps {h}×{w}{shown}")


def _cam(inside, model, image):
    """(heat, class, method): Grad-CAM, or HiResCAM where Grad-CAM is 0 everywhere."""
    heat, k = inside.grad_cam(model, image)
    if heat.max() > 0:
        return heat, k, "Grad-CAM"
    return inside.grad_cam(model, image, k, method="hirescam")[0], k, "HiResCAM"


def grad_cam_figure(image, heat, cls: int, method: str, names: list[str], true: int) -> str:
    """The image beside its class-activation map laid over it (jet colours, half transparent)."""
    base = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    over = (0.5 * base + 0.5 * colormap("jet")[(np.clip(heat, 0, 1) * 255).astype(int)])
    caption = f"true {names[true]}, class shown {names[cls]}, {method}" + (
        "" if heat.max() > 0 else " (all zero)")
    return figure(img(np.concatenate([base, np.full((base.shape[0], 1, 3), 255, np.uint8),
                                      over.astype(np.uint8)], axis=1), caption, 160), caption)
