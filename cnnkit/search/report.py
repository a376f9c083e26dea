"""What a study leaves beside its trials: trials.csv, best.yaml, history.png, importance.png
and report.html (one self-contained page, images inline, built from look/html_parts).

`best.yaml` is the best trial's RunSpec, flat, as `cnnkit train --config best.yaml` reads it:
the base run with the trial's parameters and its seed, so training it again repeats the trial
(with --folds: the same run on all the training data, with the base's validation split).
"""
from __future__ import annotations

import csv
import io
import math
from html import escape
from pathlib import Path

from cnnkit.fsutil import atomic_write_text
from cnnkit.search.live import _cells, _fmt, trial_lines, trial_rows


def best_trial(study):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    if study.direction.name == "MAXIMIZE":  # ties: the earlier trial
        return max(done, key=lambda t: (t.value, -t.number))
    return min(done, key=lambda t: (t.value, t.number))


def best_spec(space, trial, settings: dict):
    """The RunSpec that repeats `trial` (resolved: its seed and every default written out)."""
    spec = space.apply(dict(trial.params))
    seed = spec.seed if spec.seed is not None else settings["seed"]
    return spec.replace(seed=seed, out=None, verbose=None, artifacts=None).resolved()


def write_csv(path: Path, rows: list[dict]) -> None:
    names = list(dict.fromkeys(k for r in rows for k in r["params"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", "value", "std", *names, "duration_s", "dir", "retry_of",
                "error"])
    for r in rows:
        w.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                    "" if r["std"] is None else r["std"],
                    *(r["params"].get(n, "") for n in names),
                    "" if r["duration_s"] is None else f"{r['duration_s']:.3f}",
                    r["dir"] or "", "" if r["retry_of"] is None else r["retry_of"],
                    r["error"] or ""])
    atomic_write_text(path, buf.getvalue())


def write_best(path: Path, space, trial, settings: dict) -> None:
    import yaml

    spec = best_spec(space, trial, settings)
    flat = {k: v for k, v in spec.to_dict().items()
            if v is not None and k not in ("out", "verbose", "artifacts", "fold")}
    folds = f" (mean of {settings['folds']} folds)" if settings.get("folds") else ""
    head = (f"# best trial {trial.number} of study {settings['study']!r}: {space.metric} "
            f"{trial.value:.6g}{folds}\n# parameters: {dict(trial.params)}\n"
            f"# repeat it: cnnkit train --config {path}\n")
    atomic_write_text(path, head + yaml.safe_dump(flat, sort_keys=False))


def plot_history(rows: list[dict], metric: str, direction: str, path: Path) -> Path:
    """Each finished trial's objective, and the best so far."""
    from cnnkit.look.figures import save_figure

    return save_figure(history_figure(rows, metric, direction), path)


def history_figure(rows: list[dict], metric: str, direction: str):
    """plot_history's matplotlib Figure: trials on whole-number ticks (they are numbered)."""
    from cnnkit.look.figures import count_axis, new_figure

    fig = new_figure(6.4, 3.6)
    ax = fig.subplots()
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    if done:
        xs = [r["number"] for r in done]
        ys = [r["value"] for r in done]
        ax.scatter(xs, ys, color="tab:blue", label="trial", zorder=3)
        best, run = [], None
        for y in ys:
            run = y if run is None else (max(run, y) if direction == "maximize" else min(run, y))
            best.append(run)
        ax.step(xs, best, where="post", color="tab:orange", label="best so far")
    if pruned:
        ax.scatter([r["number"] for r in pruned], [r["value"] if r["value"] is not None else
                                                   math.nan for r in pruned],
                   marker="x", color="tab:gray", label="pruned (last reported)")
    ax.set(xlabel="trial", ylabel=metric, title="optimization history")
    numbers = [r["number"] for r in done + pruned] or [0]
    count_axis(ax, min(numbers), max(numbers))
    if done or pruned:
        ax.legend(fontsize=8)
    return fig


# fANOVA's forest fitted to fewer finished trials ranks noise: below this, no bars, and the
# report says how many there are and how many it takes
MIN_TRIALS_FOR_IMPORTANCE = 10


def importances(study) -> tuple[dict, str | None]:
    """(fANOVA importance of each parameter (Optuna's), None), or ({}, why there are none:
    fewer than MIN_TRIALS_FOR_IMPORTANCE finished trials, or nothing to tell apart)."""
    import optuna
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, (f"not drawn: {len(done)} finished trial{'s' * (len(done) != 1)}; parameter "
                    f"importance is drawn from {MIN_TRIALS_FOR_IMPORTANCE} or more")
    if len({t.value for t in done}) < 2:
        return {}, "not drawn: every finished trial scored the same"
    try:
        return dict(optuna.importance.get_param_importances(study)), None
    except (RuntimeError, ValueError):  # a parameter that never varied, and such
        return {}, "not drawn: no parameter varied over the finished trials"


def plot_importance(values: dict, path: Path, why: str | None = None) -> Path:
    from cnnkit.look.figures import new_figure, save_figure

    fig = new_figure(6.4, 0.6 + 0.4 * max(1, len(values)))
    ax = fig.subplots()
    if values:
        names = list(values)[::-1]
        ax.barh(names, [values[n] for n in names], color="tab:blue")
        ax.set(xlabel="importance (fANOVA, sums to 1)", title="parameter importance")
    else:
        ax.text(0.5, 0.5, f"Parameter importance {why or 'not drawn'}", ha="center",
                va="center", wrap=True)
        ax.set_axis_off()
    return save_figure(fig, path)


def write_study(out: Path, study, space, settings: dict) -> None:
    from cnnkit.look import html_parts as H

    rows = trial_rows(study)
    write_csv(out / "trials.csv", rows)
    best = best_trial(study)
    if best is not None:
        write_best(out / "best.yaml", space, best, settings)
    history = plot_history(rows, space.metric, space.direction, out / "history.png")
    values, why = importances(study)
    importance = plot_importance(values, out / "importance.png", why)

    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    headline = H.note(
        f"{len(rows)} trials ({', '.join(f'{n} {s.lower()}' for s, n in counts.items())}); "
        f"sampler {settings['sampler']}, pruner {settings['pruner']}, seed {settings['seed']}"
        + (f", {settings['folds']}-fold cross-validation" if settings.get("folds") else "")
        + (f". Best: trial {best.number}, {space.metric} {best.value:.4f}, "
           f"{dict(best.params)}" if best is not None else ". No trial has finished yet."))
    names = list(dict.fromkeys(k for r in rows for k in r["params"]))
    table = H.table(["trial", *names, space.metric, "state", "time", "run"],
                    [[r["number"], *(_fmt(r["params"].get(n, "")) for n in names),
                      *_cells(r, retry=False)[2:], r["dir"] or ""] for r in rows])
    sections = [
        ("trials", "Trials", table),
        ("history", "Optimization history", H.figure(H.png_tag(history.read_bytes(), "history"),
                                                     f"{space.metric} per trial, best so far")),
        ("importance", "Parameter importance", H.note(f"Parameter importance {why}.")
         if why else H.figure(H.png_tag(importance.read_bytes(), "importance"),
                              "fANOVA importance")),
        ("space", "Search space", "<pre>" + escape(_space_text(space)) + "</pre>"),
    ]
    atomic_write_text(out / "report.html", H.page(settings["study"], out, headline,
                                                  sections, kind="Search study"))
    atomic_write_text(out / "trials.txt", "\n".join(trial_lines(rows, space.metric)) + "\n")


def _space_text(space) -> str:
    import yaml

    return yaml.safe_dump(space.to_dict(), sort_keys=False)
