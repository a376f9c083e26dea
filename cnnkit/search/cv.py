"""Stratified k-fold cross-validation, every fold an ordinary run.

    result = cnnkit.cross_validate(cnnkit.RunSpec(model="seed003-cnn", dataset="digits",
                                                  epochs=3), folds=5)
    result.folds          # one dict of metrics per fold
    result.mean, result.std
    print(result.table())

Fold i is `spec` with `fold={"k": K, "index": i, "seed": S}`: the run trains on the other folds
of its training data and validates on fold i (RunSpec.fold; the held-out test split stays the
test split). So each fold is a run directory like any other, resumable after a kill, and
`cnnkit train --config FOLD/config.json` repeats it. With `out=None` the folds run in memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import CnnkitError

FOLD_METRICS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "epochs_run")


@dataclass
class CVResult:
    """Per-fold metrics (`folds`), their `mean` and `std` (sample std, ddof=1), the validation
    indices of each fold (into the training images left after the test split and `limit`),
    and where the folds were written (None: in memory)."""

    folds: list[dict]
    mean: dict
    std: dict
    indices: list[list[int]] = field(repr=False, default_factory=list)
    out: Path | None = None

    def table(self) -> str:
        head = ["fold", "train", "val", *FOLD_METRICS[:-1], "epochs"]
        rows = [[str(f["fold"]), f"{f['train_images']:,}", f"{f['val_images']:,}",
                 *(f"{f[m]:.4f}" for m in FOLD_METRICS[:-1]), str(f["epochs_run"])]
                for f in self.folds]
        rows.append(["mean ± std", "", "", *(f"{self.mean[m]:.4f} ± {self.std[m]:.4f}"
                                             for m in FOLD_METRICS[:-1]), ""])
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head] + rows)

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={self.mean[k]:.4f}±{self.std[k]:.4f}" for k in
                      ("val_accuracy", "test_accuracy"))
        return f"CVResult(folds={len(self.folds)}, {m})"


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def fold_spec(spec, k: int, index: int, seed: int, out: Path | None):
    """The run of fold `index` (0-based): its own validation split, nothing else changed."""
    return spec.replace(fold={"k": k, "index": index, "seed": seed}, val_split=0.0,
                        val_from_test=False, out=None if out is None else str(out))


def check_folds(folds) -> int:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise CnnkitError(f"folds={folds!r} is out of range; valid: an integer >= 2",
                          option="folds", value=folds)
    return folds


def fold_indices(spec, k: int, seed: int) -> list[list[int]]:
    """Each fold's validation indices, as the runs will draw them (checks k against the data:
    a class with fewer than k images is one clear line)."""
    from cnnkit.data.split import kfold_indices
    from cnnkit.runs.prepare import load_splits

    ds, splits = load_splits(spec.replace(val_split=0.0, val_from_test=False, fold=None))
    y = splits["train"][1]
    return [va.tolist() for _, va in kfold_indices(y, k, seed=seed, class_names=ds.class_names)]


def run_or_resume(spec, callbacks=None):
    """`cnnkit.run(spec)`, or its continuation where `spec.out` already holds that run."""
    from cnnkit.runs.run import run
    from cnnkit.runs.spec import RunSpec

    from cnnkit.io.rundir import RunDir

    if spec.out is not None and spec.artifacts != "none" and RunDir(spec.out).is_run():
        return run(RunSpec(out=spec.out, verbose=spec.verbose), resume=True, callbacks=callbacks)
    return run(spec, callbacks=callbacks)


def fold_record(index: int, result) -> dict:
    m, h = result.metrics, result.history
    best = m["best_epoch"] - 1
    return {"fold": index + 1, "val_loss": h["val_loss"][best], "val_accuracy": h["val_accuracy"][best],
            "test_loss": m["test_loss"], "test_accuracy": m["test_accuracy"],
            "epochs_run": m["epochs_run"], "train_images": m["train_images"],
            "val_images": m["val_images"], "stop_reason": m.get("stop_reason"),
            "history": {k: h[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}}


def cross_validate(spec, folds: int = 5, seed: int | None = None, out=None,
                   artifacts: str = "metrics", verbose: int | None = None) -> CVResult:
    """Train `spec` once per fold of a stratified k-fold and gather each fold's metrics.
    `seed` draws the folds (default: the run's seed); `out` puts fold i in `out/fold-i`
    (each a run directory with `artifacts`), with `folds.json` (metrics and indices) and
    `folds.png` beside them; run again, it continues what a kill interrupted."""
    from cnnkit.fsutil import atomic_write_json
    from cnnkit.runs.spec import RunSpec

    if not isinstance(spec, RunSpec):
        raise CnnkitError(f"cross_validate() takes a RunSpec; received {type(spec).__name__}")
    k = check_folds(folds)
    if out is None and spec.out is not None:
        out = spec.out
    base = spec.replace(out=None, fold=None, val_split=0.0, val_from_test=False).resolved()
    seed = base.seed if seed is None else seed
    verbose = base.verbose if verbose is None else verbose
    out = None if out is None else Path(out)
    specs = [fold_spec(base, k, i, seed, None if out is None else out / f"fold-{i + 1}")
             .replace(artifacts="none" if out is None else artifacts, verbose=0).resolved()
             for i in range(k)]
    indices = fold_indices(base, k, seed)  # also checks k against the classes' sizes
    if out is not None:
        _check_out(out)
        out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, s in enumerate(specs):
        result = run_or_resume(s)
        records.append(fold_record(i, result))
        if verbose:
            r = records[-1]
            print(f"fold {i + 1}/{k}: val_accuracy {r['val_accuracy']:.4f}, val_loss "
                  f"{r['val_loss']:.4f}, test_accuracy {r['test_accuracy']:.4f}", flush=True)
    result = summarize(records, indices, out)
    if out is not None:
        atomic_write_json(out / "folds.json", {
            "k": k, "seed": seed, "spec": base.to_options(), "mean": result.mean,
            "std": result.std, "folds": records,
            "indices": {"of": "the training images after the held-out test split and limit",
                        "val": indices}})
        plot_folds(records, out / "folds.png")
    return result


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(
            p.name not in ("folds.json", "folds.png") and not p.name.startswith("fold-")
            and not p.name.startswith(".") for p in out.iterdir())):
        raise CnnkitError(f"{out} exists and holds something other than folds; choose another out")


def summarize(records: list[dict], indices, out) -> CVResult:
    mean, std = {}, {}
    for m in FOLD_METRICS:
        mean[m], std[m] = mean_std([r[m] for r in records])
    return CVResult(folds=records, mean=mean, std=std, indices=indices, out=out)


def plot_folds(records: list[dict], path: Path) -> Path:
    """Each fold's validation curve (left) and its figures against the mean (right)."""
    from cnnkit.look.figures import save_figure

    return save_figure(folds_figure(records), path)


def folds_figure(records: list[dict]):
    """plot_folds' matplotlib Figure: epochs on whole-number ticks."""
    from cnnkit.look.figures import count_axis, new_figure

    fig = new_figure(9, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    for r in records:
        acc = r["history"]["val_accuracy"]
        ax1.plot(range(1, len(acc) + 1), acc, marker="o", label=f"fold {r['fold']}")
    ax1.set(xlabel="epoch", ylabel="val_accuracy", title="validation accuracy per fold")
    count_axis(ax1, 1, max([len(r["history"]["val_accuracy"]) for r in records] + [1]))
    ax1.legend(fontsize=8)
    names = ["val_accuracy", "test_accuracy"]
    for j, name in enumerate(names):
        values = [r[name] for r in records]
        ax2.scatter([j] * len(values), values, color="tab:blue", zorder=3)
        m, s = mean_std(values)
        ax2.errorbar([j + 0.15], [m], yerr=[s], fmt="s", color="tab:orange", capsize=4)
    ax2.set_xticks(range(len(names)), names)
    ax2.set(title="per fold (blue), mean ± std (orange)", xlim=(-0.5, len(names) - 0.5))
    return fig
