"""The pages drawn from run directories: a run's report.html (written again by `cnnkit report
RUN`), the table of `cnnkit runs` and the page of `cnnkit compare`. The runs stage reads the
directories (RunDir); cnnkit.look draws what it is given.

    rows, groups, problems = list_runs("runs")
    write_comparison(["runs/cnn", "runs/deep"], "compare.html")
    write_report_html("runs/cnn")
"""
from __future__ import annotations

from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.io.rundir import CONFIG, CURVES, RELIABILITY, REPORT_HTML, RunDir


def write_report_html(run_dir, model=None, evidence: dict | None = None) -> Path:
    """Write RUN/report.html from what the run holds and return its path: config.json,
    history.csv, metrics.json, curves.png, reliability.png, the best model and its test predictions saved at the
    end of the run (best/predictions.npz). A run stopped before its end saved none: its best
    model so far is evaluated on the run's own test split."""
    from cnnkit.look.html import render_report_html
    from cnnkit.model.resolve import open_model
    from cnnkit.runs.spec import RunSpec

    run = RunDir(run_dir)
    options = run.options  # first: a folder that is not a run says so
    if options.get("artifacts", "full") != "full":
        raise CnnkitError(f"{run}: the run was made with artifacts={options['artifacts']!r}, "
                          "which saves no model to report on; valid: a run with artifacts 'full'")
    if model is None:
        model, _ = open_model(run.path)
    if evidence is None:
        evidence = run.predictions() or _evaluated(run, model)
    curves = (run / CURVES).read_bytes() if (run / CURVES).is_file() else None
    reliability = (run / RELIABILITY).read_bytes() if (run / RELIABILITY).is_file() else None
    title = f"{RunSpec.from_dict(options).model_label} on {run.resolved['dataset']['name']}"
    page = render_report_html(title, run.path, model, run.config, run.history, run.metrics,
                              curves, evidence, reliability)
    return run.write_text(REPORT_HTML, page)


def _evaluated(run: RunDir, model) -> dict:
    """report_evidence for a run that stopped before its end: its data split again as the run
    split it (a folder read at the model's size), its best model so far evaluated."""
    from cnnkit.look.html import report_evidence
    from cnnkit.runs.evaluate import evaluate
    from cnnkit.runs.prepare import prepare_data

    options = run.options
    ds, splits = prepare_data(options, model.input_shape
                              if options["dataset"].startswith("folder:") else None)
    return report_evidence(splits, evaluate(run.path).probs, ds.num_classes)


def list_runs(root, group_row=None) -> tuple[list[dict], list[dict], list[dict]]:
    """(rows, groups, unreadable) for the run directories in `root` (or `root` itself if it is
    one). A folder without config.json is not a run: `group_row(folder)` (a callable, the
    search stage's: a study or a cross-validation) gives its row in `groups`, or None, and it
    is passed over unless it holds a run's other files. Each folder that cannot be read is one
    {"path", "error"} and the rest still list."""
    from cnnkit.look.compare import run_row

    root = Path(root)
    if not root.is_dir():
        raise CnnkitError(f"{root}: no such folder (give the folder that holds run directories)")
    candidates = [root] if RunDir(root).is_run() else sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows, groups, unreadable = [], [], []
    for path in candidates:
        run = RunDir(path)
        if not run.is_run():
            try:
                group = group_row(path) if group_row is not None else None
            except (CnnkitError, OSError) as e:
                unreadable.append({"path": str(path), "error": str(e)})
                continue
            if group is not None:
                groups.append(group)
            elif run.holds_run_files():
                unreadable.append({"path": str(path), "error": f"{path}: no {CONFIG}"})
            continue
        try:
            rows.append(run_row(run, path.name))
        except (CnnkitError, OSError) as e:
            unreadable.append({"path": str(path), "error": str(e)})
    return rows, groups, unreadable


def write_comparison(run_dirs: list, out) -> Path:
    """Two or more runs side by side in one HTML file (cnnkit.look.compare); its path."""
    from cnnkit.fsutil import atomic_write_text
    from cnnkit.look.compare import comparison_page

    runs = [RunDir(d) for d in run_dirs]  # fewer than two: comparison_page says so
    for run in runs:  # each read now: a broken run stops the page with its file named
        run.options, run.history_rows, run.metrics
    return atomic_write_text(out, comparison_page(runs, [str(d) for d in run_dirs]))
