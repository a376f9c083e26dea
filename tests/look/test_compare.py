"""`cnnkit runs` (a table of run directories) and `cnnkit compare` (runs side by side in one
self-contained HTML file), on real runs: seed 003's 3-layer CNN and its deep variant."""
import base64
import json
import re
import shutil

import pytest

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.look.compare import COLUMNS
from cnnkit.runs.pages import list_runs, write_comparison

SPEC = dict(dataset="digits", epochs=2, batch_size=64, seed=1, verbose=0, val_split=0.2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/cnn and runs/deep, finished; runs/killed without metrics.json (as a run killed
    mid-way leaves it); runs/broken with a corrupt config.json; runs/notes, not a run."""
    import cnnkit

    root = tmp_path_factory.mktemp("runs")
    for name, model in (("cnn", "seed003-cnn"), ("deep", "seed003-deep")):
        cnnkit.run(cnnkit.RunSpec(model=model, out=str(root / name), **SPEC))
    shutil.copytree(root / "cnn", root / "killed")
    (root / "killed" / "metrics.json").unlink()
    shutil.copytree(root / "cnn", root / "broken")
    (root / "broken" / "config.json").write_text("{not json")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("try a wider net")
    return root


def metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_lists_each_run(runs, capsys):
    code, out, err = cli(capsys, "runs", runs, "--sort", "name")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["name", "model", "dataset", "epochs"]
    assert [line.split()[0] for line in lines] == ["cnn", "deep", "killed"]
    cnn = lines[0].split()
    assert cnn[1:4] == ["seed003-cnn", "digits", "2"]
    assert f"{metrics(runs / 'cnn')['test_accuracy']:.4f}" in cnn
    assert f"{metrics(runs / 'cnn')['best_val_loss']:.4f}" in cnn
    assert "unfinished" in lines[2]
    # the broken run is named, once, and the others still listed; notes/ is not a run
    assert err.count("broken") == 1 and "config.json" in err and "notes" not in out + err


def test_sorting_by_each_column(runs, capsys):
    rows, _, _ = list_runs(runs)
    for key in COLUMNS:
        assert cli(capsys, "runs", runs, "--sort", key)[0] == 0
    _, out, _ = cli(capsys, "runs", runs, "--sort", "test_accuracy")
    order = [line.split()[0] for line in out.splitlines()[1:]]
    by_accuracy = sorted(["cnn", "deep"], key=lambda n: -metrics(runs / n)["test_accuracy"])
    assert order == by_accuracy + ["killed"]  # best first; an unfinished run has none: last


def test_a_bad_sort_key_is_one_line_naming_the_valid_ones(runs, capsys):
    code, out, err = cli(capsys, "runs", runs, "--sort", "accuracy")
    assert code == 2 and out == ""
    assert err.strip() == ("cnnkit: error: unknown sort key 'accuracy'; valid: "
                           + ", ".join(COLUMNS) + "; did you mean 'test_accuracy'?")


def test_json_holds_the_numbers_and_the_unreadable_runs(runs, capsys):
    code, out, _ = cli(capsys, "runs", runs, "--json")
    assert code == 0
    data = json.loads(out)
    rows = {r["name"]: r for r in data["runs"]}
    assert set(rows) == {"cnn", "deep", "killed"}
    m = metrics(runs / "deep")
    assert rows["deep"]["test_accuracy"] == m["test_accuracy"]
    assert rows["deep"]["wall_time"] == m["wall_time_s"] and rows["deep"]["epochs"] == 2
    assert rows["deep"]["status"] == "finished" and rows["killed"]["status"] == "unfinished"
    assert rows["killed"]["test_accuracy"] is None
    assert rows["killed"]["best_val_loss"] == pytest.approx(metrics(runs / "cnn")["best_val_loss"])
    assert [u["path"] for u in data["unreadable"]] == [str(runs / "broken")]


def test_an_empty_or_missing_folder(tmp_path, capsys):
    assert cli(capsys, "runs", tmp_path) == (0, f"no runs in {tmp_path}\n", "")
    code, _, err = cli(capsys, "runs", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such folder" in err


def test_compare_writes_one_self_contained_page(runs, tmp_path, capsys):
    out = tmp_path / "compare.html"
    code, printed, _ = cli(capsys, "compare", runs / "cnn", runs / "deep", "--out", out)
    assert code == 0 and str(out) in printed
    page = out.read_text()
    for name in ("cnn", "deep"):
        m = metrics(runs / name)
        assert f"{m['test_accuracy']:.4f}" in page and f"{m['best_val_loss']:.4f}" in page
        for c in m["per_class"]:
            assert f"{c['recall']:.3f}" in page
    assert "seed003-cnn" in page and "seed003-deep" in page
    # nothing to fetch: every image inline, no script, no link out
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2  # curves, per-class recall
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # ("http-equiv": the Content-Security-Policy that forbids any fetch; no URL of any kind)
    assert "<script" not in page and not re.search(r"https?:", page) and "<link" not in page
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert "<style>" in page


def test_compare_escapes_every_string(runs, tmp_path):
    odd = tmp_path / '<b class="x">wide & deep'  # a folder name is any text but "/"
    shutil.copytree(runs / "deep", odd)
    page = write_comparison([runs / "cnn", odd], tmp_path / "c.html").read_text()
    assert '<b class="x">' not in page
    assert page.count("&lt;b class=&quot;x&quot;&gt;wide &amp; deep") >= 3  # title, heads


def test_compare_shows_an_unfinished_run_as_such(runs, tmp_path):
    page = write_comparison([runs / "cnn", runs / "killed"], tmp_path / "c.html").read_text()
    assert "Unfinished (no metrics.json yet): killed" in page


@pytest.mark.parametrize("names, message", [
    (["cnn"], "compare needs at least two runs; got 1"),
    (["cnn", "broken"], "broken/config.json: corrupt run configuration"),
    (["cnn", "notes"], "notes: not a run directory"),
])
def test_compare_refuses_what_it_cannot_compare(runs, tmp_path, names, message):
    with pytest.raises(CnnkitError, match=message):
        write_comparison([runs / n for n in names], tmp_path / "c.html")
    assert not (tmp_path / "c.html").exists()
