"""The cache is the user's: `cnnkit cache` lists what cnnkit keeps (datasets, decoded folders,
compiled kernels...) with sizes and clears all or part of it; a renamed folder maps the cache
it already has; a Dataset's repr is one line."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.data import load_dataset
from cnnkit.data.folder import load_folder


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """A data cache and a kernel cache of their own, holding a dataset, a decoded folder, a
    decoded npz and CSV table, and a kernel library; a file of the user's own beside them."""
    data, kernels = tmp_path / "data", tmp_path / "kcache"
    monkeypatch.setenv("CNNKIT_DATA", str(data))
    monkeypatch.setenv("CNNKIT_CACHE", str(kernels))
    (data / "fashion-mnist").mkdir(parents=True)
    (data / "fashion-mnist" / "decoded-v1.npz").write_bytes(b"x" * 300_000)
    (data / "mine.txt").write_text("the user's own file")
    (kernels / "kernels").mkdir(parents=True)
    (kernels / "kernels" / "cnnkit-kernels-0123.so").write_bytes(b"k" * 5_000)
    folder = tmp_path / "photos"
    for k, name in enumerate(("cat", "dog")):
        for i in range(3):
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 6), 40 * k + i, np.uint8)).save(folder / name / f"{i}.png")
    load_folder(folder)
    x = np.zeros((20, 4, 4), np.uint8)
    np.savez(tmp_path / "small.npz", x_train=x, y_train=np.arange(20) % 2)
    load_dataset(f"npz:{tmp_path / 'small.npz'}")
    rows = "label," + ",".join(f"pixel{i}" for i in range(16)) + "\n" + "".join(
        f"{i % 2}," + ",".join(["7"] * 16) + "\n" for i in range(6))
    (tmp_path / "train.csv").write_text(rows)
    load_dataset(f"csv:{tmp_path / 'train.csv'}")
    return data, kernels, folder


def _listing(capsys) -> dict:
    assert main(["cache", "--json"]) == 0
    return {p["part"]: p for p in json.loads(capsys.readouterr().out)}


def test_the_listing_names_each_part_its_entries_and_their_sizes(caches, capsys):
    data, kernels, folder = caches
    parts = _listing(capsys)
    assert list(parts) == ["datasets", "folders", "decoded", "models", "kernels"]
    assert [(e["name"], e["bytes"]) for e in parts["datasets"]["entries"]] == [
        ("fashion-mnist", 300_000)]
    [decoded] = parts["folders"]["entries"]
    file = data / "folders" / decoded["name"]
    assert decoded["bytes"] == file.stat().st_size and decoded["source"] == str(folder)
    assert [e["name"].split("/")[0] for e in parts["decoded"]["entries"]] == ["npz", "tables"]
    assert parts["kernels"]["folder"] == str(kernels / "kernels")
    assert [e["name"] for e in parts["kernels"]["entries"]] == ["cnnkit-kernels-0123.so"]
    assert parts["models"]["entries"] == []

    assert main(["cache"]) == 0
    text = capsys.readouterr().out
    assert "datasets      0.3 MB  1 item: MNIST-family datasets" in text
    assert "  fashion-mnist  0.3 MB" in text and f"from {folder}" in text
    assert "mine.txt" not in text  # not cnnkit's
    total = sum(p["bytes"] for p in parts.values())
    assert text.splitlines()[-1].split()[:3] == ["total", f"{total / 1e6:,.1f}", "MB"]


def test_clear_removes_the_parts_named_then_everything_of_cnnkits(caches, capsys):
    data, kernels, _ = caches
    before = _listing(capsys)
    assert main(["cache", "clear", "folders", "kernels"]) == 0
    freed = before["folders"]["bytes"] + before["kernels"]["bytes"]
    assert capsys.readouterr().out == (f"Cleared folders, kernels of cnnkit's cache: "
                                       f"{freed / 1e3:,.1f} kB freed\n")
    after = _listing(capsys)
    assert after["folders"]["entries"] == [] and after["kernels"]["entries"] == []
    assert after["datasets"] == before["datasets"] and after["decoded"] == before["decoded"]

    assert main(["cache", "clear"]) == 0
    assert "Cleared every part of cnnkit's cache" in capsys.readouterr().out
    assert all(p["bytes"] == 0 for p in _listing(capsys).values())
    assert (data / "mine.txt").read_text() == "the user's own file"  # never cnnkit's to remove


@pytest.mark.parametrize("argv,message", [
    (["cache", "clear", "pictures"], "unknown cache part 'pictures'; valid: datasets, folders, "
                                     "decoded, models, kernels"),
    (["cache", "list", "kernels"], "cnnkit cache lists every part; to remove some: cnnkit "
                                   "cache clear kernels"),
])
def test_a_bad_part_is_one_line_and_removes_nothing(caches, capsys, argv, message):
    before = _listing(capsys)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert _listing(capsys) == before


def test_a_renamed_folder_maps_the_cache_it_already_has(caches):
    data, _, folder = caches
    moved = folder.rename(folder.parent / "renamed")
    ds = load_folder(moved)
    assert ds.info["cached"] and len(ds.y_train) == 6
    assert len(list((data / "folders").glob("*.safetensors"))) == 1  # no second copy
    (moved / "cat" / "0.png").unlink()  # the content changed: decoded again
    again = load_folder(moved)
    assert not again.info["cached"] and len(again.y_train) == 5


def test_a_datasets_repr_is_one_line(caches):
    _, _, folder = caches
    shown = repr(load_folder(folder))
    assert shown == f"Dataset('folder:{folder}', 6 train, 6×6×1, 2 classes: cat, dog)"
    digits = repr(load_dataset("digits"))
    assert digits == ("Dataset('digits', 1,797 train, 8×8×1, 10 classes: 0, 1, 2, 3, 4, ...)")
