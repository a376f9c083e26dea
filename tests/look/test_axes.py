"""Pictures with honest axes: epochs, folds and trials are counted, so every curve's axis ticks
whole numbers only, and a 1-epoch run is a point on an axis around 1, never 0.945 ... 1.055.
Read from the matplotlib figures the drawing functions build (the same ones they save)."""
from __future__ import annotations

import matplotlib
import pytest

from cnnkit.look.plots import history_figure, plot_history
from cnnkit.search.cv import folds_figure
from cnnkit.search.report import history_figure as trials_figure

matplotlib.use("Agg")


def ticks(ax) -> list[str]:
    """The x tick labels a reader sees (inside the axis), as drawn."""
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    return [t.get_text().replace("\u2212", "-") for t, x in zip(ax.get_xticklabels(), ax.get_xticks())
            if lo <= x <= hi]


def history(n):
    return {"loss": [1.0 / (i + 1) for i in range(n)], "val_loss": [1.1 / (i + 1) for i in range(n)],
            "accuracy": [0.5 + i / 100 for i in range(n)], "val_accuracy": [0.4 + i / 100 for i in range(n)]}


def test_one_epoch_is_a_point_on_an_axis_ticked_1():
    fig = history_figure(history(1))
    for ax in fig.axes:
        assert ticks(ax) == ["1"]
        assert ax.get_xlim() == (0.5, 1.5)
        (train, *_), point = ax.get_lines(), ax.get_lines()[0]
        assert list(point.get_xdata()) == [1] and point.get_marker() == "o"  # drawn, visible


@pytest.mark.parametrize("n, expected", [(2, ["1", "2"]), (3, ["1", "2", "3"]),
                                         (5, ["1", "2", "3", "4", "5"])])
def test_a_few_epochs_tick_each_epoch_and_nothing_between(n, expected):
    fig = history_figure(history(n), best_epoch=n)
    assert [ticks(ax) for ax in fig.axes] == [expected, expected]


def test_many_epochs_tick_whole_numbers_only():
    fig = history_figure(history(40))
    for ax in fig.axes:
        shown = ticks(ax)
        assert 3 <= len(shown) <= 12 and all(t.isdigit() for t in shown), shown


def test_folds_png_ticks_epochs_1_2_3():
    records = [{"fold": k, "history": {"val_accuracy": [0.5, 0.6 + k / 100, 0.7]},
                "val_accuracy": 0.7, "test_accuracy": 0.68 + k / 100} for k in (1, 2, 3)]
    curves, spread = folds_figure(records).axes
    assert ticks(curves) == ["1", "2", "3"]
    assert ticks(spread) == ["val_accuracy", "test_accuracy"]
    one_epoch = [{**r, "history": {"val_accuracy": [0.6]}} for r in records]
    assert ticks(folds_figure(one_epoch).axes[0]) == ["1"]


def test_tune_history_ticks_trial_numbers():
    rows = [{"number": i, "state": "COMPLETE", "value": v} for i, v in enumerate([0.5, 0.7, 0.6])]
    assert ticks(trials_figure(rows, "val_accuracy", "maximize").axes[0]) == ["0", "1", "2"]
    assert ticks(trials_figure(rows[:1], "val_accuracy", "maximize").axes[0]) == ["0"]


def test_compare_curves_tick_epochs():
    from types import SimpleNamespace

    from cnnkit.look.compare import _curves_figure

    rows = [{"epoch": 1, "loss": 0.9, "val_loss": 1.0, "accuracy": 0.6, "val_accuracy": 0.5}]
    runs = [SimpleNamespace(history_rows=rows), SimpleNamespace(history_rows=rows)]
    assert [ticks(ax) for ax in _curves_figure(runs, ["a", "b"]).axes] == [["1"], ["1"]]


def test_the_saved_png_is_the_figure_drawn(tmp_path):
    from PIL import Image

    path = plot_history(history(1), tmp_path / "curves.png")
    with Image.open(path) as img:
        assert img.size == (1000, 360)
