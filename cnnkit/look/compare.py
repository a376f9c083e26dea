"""Runs side by side: the table `cnnkit runs` prints and the page `cnnkit compare` writes.

Drawn from runs the runs stage has opened (cnnkit.runs.RunDir: `.path`, `.options`, `.resolved`,
`.history_rows`, `.metrics`, `.started_at`; metrics is None while a run trains, or if it was
killed: the run is "unfinished"); cnnkit.runs.pages reads the folders (`list_runs`,
`write_comparison`). The page is made as a run's report.html is (look/html_parts: one
self-contained file, images as data: URIs, inline CSS, no script, nothing fetched).
"""
from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path

from cnnkit.errors import CnnkitError, one_of
from cnnkit.look.checkup import ran_on_short
from cnnkit.look.figures import count_axis, new_figure, png_bytes
from cnnkit.look.html_parts import Raw, note, page, png_tag, table

# The table's columns, which are also the sort keys and the JSON keys (wall_time in seconds).
COLUMNS = ("name", "model", "dataset", "epochs", "best_val_loss", "test_accuracy", "wall_time",
           "date", "ran_on")
HEADERS = ("name", "model", "dataset", "epochs", "best val loss", "test acc", "wall time", "date",
           "ran on")
BEST_FIRST_DESCENDING = ("test_accuracy",)  # the others sort ascending (best_val_loss: best first)


def model_name(options: dict) -> str:
    """A run's model in a few words: a description's name, a file's stem, a preset."""
    m = options.get("model")
    if isinstance(m, dict) and isinstance(m.get("module"), str):  # your nn.Module: its class
        return m["module"].rsplit(".", 1)[-1]
    if isinstance(m, dict):  # a model description
        return str(m.get("name") or "model")
    return Path(m).stem if isinstance(m, str) and "/" in m else str(m)


def curve(run, key: str) -> list[float]:
    return [row.get(key, math.nan) for row in run.history_rows]


# --- the table ------------------------------------------------------------------------------

def run_row(run, name: str) -> dict:
    """One table row (COLUMNS), plus path, status and the epochs asked for."""
    m = run.metrics or {}
    val = [v for v in curve(run, "val_loss") if math.isfinite(v)]
    best_val = m.get("best_val_loss") if run.metrics else (min(val) if val else None)
    return {"name": name, "model": model_name(run.options), "dataset": run.options.get("dataset"),
            "epochs": m.get("epochs_run", len(run.history_rows)), "best_val_loss": best_val,
            "test_accuracy": m.get("test_accuracy"), "wall_time": m.get("wall_time_s"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(run.started_at)),
            "ran_on": ran_on_short(run.resolved.get("ran_on")),  # torch, git commit, data
            "status": "finished" if run.metrics else "unfinished",
            "epochs_planned": (run.options.get("train") or {}).get("epochs"),
            "limit": run.options.get("limit"),  # trained on the first N images only
            "path": str(run.path)}


def sort_rows(rows: list[dict], key: str) -> list[dict]:
    """Sorted by one column, missing values last; test_accuracy best first, others ascending."""
    key = key.replace("-", "_")
    if key not in COLUMNS:
        raise one_of("sort key", key, COLUMNS)
    present = [r for r in rows if r[key] is not None]
    missing = [r for r in rows if r[key] is None]
    return sorted(present, key=lambda r: r[key], reverse=key in BEST_FIRST_DESCENDING) + missing


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m {s:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _cells(row: dict) -> list[str]:
    done, planned = row["epochs"], row["epochs_planned"]
    epochs = str(done) if planned in (None, done) else f"{done}/{planned}"  # stopped or unfinished
    loss, acc = row["best_val_loss"], row["test_accuracy"]
    if row["status"] == "unfinished":
        acc_cell = "unfinished"
    else:
        acc_cell = "—" if acc is None else f"{acc:.4f}"
    return [row["name"], str(row["model"]), dataset_cell(row), epochs,
            "—" if loss is None else f"{loss:.4f}", acc_cell,
            format_duration(row["wall_time"]), row["date"].replace("T", " ")[:16], row["ran_on"]]


def dataset_cell(row: dict) -> str:
    """The dataset, marked when only its first N training images were used (--limit)."""
    limit = row.get("limit")
    return str(row["dataset"]) + (f" (--limit {limit})" if limit else "")


GROUP_HEADERS = ("study or cv", "kind", "model", "dataset", "size", "best", "date")


def format_groups(rows: list[dict]) -> str:
    """Studies and cross-validations (cnnkit.search.listing rows) as aligned text columns."""
    table = [list(GROUP_HEADERS)] + [
        [r["name"], r["kind"], str(r["model"]), dataset_cell(r), r["size"], r["best"],
         r["date"].replace("T", " ")[:16]] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(GROUP_HEADERS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in table)


def format_table(rows: list[dict]) -> str:
    """The rows as aligned text columns, numbers right-aligned."""
    table = [list(HEADERS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    right = {3, 4, 5, 6}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths))).rstrip()
                     for line in table)


# --- the comparison page ----------------------------------------------------------------------

# Options that say where or how verbosely a run was made, not what it computed.
NOT_SETTINGS = ("verbose", "artifacts", "tensorboard", "data_dir")
METRIC_ROWS = [  # (metrics.json key, label, format, which is best)
    ("test_accuracy", "test accuracy", "{:.4f}", max), ("test_loss", "test loss", "{:.4f}", min),
    ("best_epoch", "best epoch", "{}", None), ("best_val_loss", "best val loss", "{:.4f}", min),
    ("best_val_accuracy", "best val accuracy", "{:.4f}", max),
    ("epochs_run", "epochs run", "{}", None), ("stop_reason", "stopped", "{}", None),
    ("wall_time_s", "wall time", None, min), ("train_time_s", "training time", None, min),
    ("samples_per_s", "samples/s", "{:,.0f}", max),
    ("peak_rss_mb", "peak memory (MiB)", "{:,.0f}", min),
]


def _labels(runs: list, given: list[str]) -> list[str]:
    """Each run's folder name, or the path as given where two runs share a name."""
    names = [r.path.name for r in runs]
    return [n if names.count(n) == 1 else g for n, g in zip(names, given)]


def _settings(run) -> dict:
    flat = {k: v for k, v in run.options.items() if k != "train" and k not in NOT_SETTINGS}
    train = run.options.get("train") or {}
    flat.update({k: v for k, v in train.items() if k not in NOT_SETTINGS})
    flat["model"] = model_name(run.options)
    flat["parameters"] = (run.resolved.get("model_summary") or {}).get("total_params")
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
            for k, v in flat.items()}


def _per_class(runs: list) -> tuple[list[str], list[dict]]:
    """(class names in order of first appearance, [{class: recall}] per run)."""
    recalls = [{str(c["class"]): c.get("recall") for c in (r.metrics or {}).get("per_class", [])}
               for r in runs]
    classes = list(dict.fromkeys(c for rec in recalls for c in rec))
    return classes, recalls


def _curves_figure(runs, labels):
    fig = new_figure(11, 4)
    n_epochs = max([len(curve(run, key)) for run in runs for key in ("loss", "val_loss")] + [1])
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, (run, label) in enumerate(zip(runs, labels)):
            color = f"C{j % 10}"
            for key, style, split in ((metric, "-", "train"),
                                      (f"val_{metric}", "--", "validation")):
                values = curve(run, key)
                if any(math.isfinite(v) for v in values):
                    ax.plot(range(1, len(values) + 1), values, style, color=color,
                            label=f"{label} {split}", marker="o" if len(values) <= 30 else None,
                            markersize=3)
        ax.set_title(f"{metric} (solid: train, dashed: validation)")
        ax.set_xlabel("epoch")
        count_axis(ax, 1, n_epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _recall_figure(classes, recalls, labels):
    import numpy as np

    fig = new_figure(min(max(6, 0.45 * len(classes) * len(labels) + 2), 14), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(labels)
    x = np.arange(len(classes))
    for j, (rec, label) in enumerate(zip(recalls, labels)):
        ax.bar(x + (j - (len(labels) - 1) / 2) * width,
               [rec.get(c) if rec.get(c) is not None else np.nan for c in classes],
               width, label=label, color=f"C{j % 10}")
    ax.set_xticks(x, classes, rotation=45 if len(classes) > 12 else 0, ha="right"
                  if len(classes) > 12 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall (per-class accuracy)")
    ax.set_xlabel("class")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def _table(header: list[str], rows: list[tuple[str, list, object]], fmt, cls="num") -> str:
    """rows: (label, values, best: max/min/None); the best value of a row is in bold."""
    out = []
    for label, values, best in rows:
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)]
        top = best(numbers) if best and len(numbers) > 1 and len(set(numbers)) > 1 else None
        out.append([label] + [Raw(f"<b>{html.escape(fmt(label, v))}</b>")
                              if top is not None and v == top else fmt(label, v) for v in values])
    return table(header, out, cls)


def comparison_page(runs: list, given: list[str]) -> str:
    """Two or more runs in one HTML page: settings that differ, training curves overlaid,
    final metrics side by side, per-class recall side by side. `given`: the runs' paths as
    the user wrote them (labels where two runs share a folder name)."""
    if len(runs) < 2:
        raise CnnkitError(f"compare needs at least two runs; got {len(runs)}")
    labels = _labels(runs, given)
    header = [""] + labels
    settings = [_settings(r) for r in runs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    shown = [k for k in keys if k in ("model", "dataset", "parameters")
             or len({json.dumps(s.get(k)) for s in settings}) > 1]

    def plain(key, v):  # an option left unset (None) got its default
        if v is None:
            return "—" if key == "parameters" else "default"
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    formats = {label: fmt for _, label, fmt, _ in METRIC_ROWS}

    def metric(label, v):
        if v is None:
            return "—"
        return format_duration(v) if formats[label] is None else formats[label].format(v)

    metric_rows = [(label, [(r.metrics or {}).get(key) for r in runs], best)
                   for key, label, _, best in METRIC_ROWS]
    unfinished = [lab for lab, r in zip(labels, runs) if r.metrics is None]
    classes, recalls = _per_class(runs)
    settings_part = (_table(header, [(k, [s.get(k) for s in settings], None) for k in shown],
                            plain, cls="")
                     + note("Model, dataset and parameter count, then every option that "
                            "differs between the runs."))
    metrics_part = _table(header, metric_rows, metric) + (
        note(f"Unfinished (no metrics.json yet): {', '.join(unfinished)}.") if unfinished else "")
    if classes:
        per_class = (png_tag(png_bytes(_recall_figure(classes, recalls, labels)),
                             "recall per class")
                     if len(classes) <= 40 else "")  # past that, bars are too thin to read
        per_class += _table(["class"] + labels,
                            [(c, [rec.get(c) for rec in recalls], max) for c in classes],
                            lambda _, v: "—" if v is None else f"{v:.3f}")
    else:
        per_class = note("No per-class figures: no run has finished.")
    sections = [
        ("settings", "Settings", settings_part),
        ("curves", "Training curves", png_tag(png_bytes(_curves_figure(runs, labels)),
                                              "loss and accuracy per epoch")),
        ("metrics", "Final metrics", metrics_part),
        ("classes", "Per-class accuracy (recall on the test split)", per_class),
    ]
    return page(" vs ".join(labels), None, "", sections, kind="cnnkit compare")
