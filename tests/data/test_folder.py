"""folder:PATH — class subfolders, train/test layout, skipped files, the decode cache, errors."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data import load_dataset
from cnnkit.data.folder import load_folder
from cnnkit.errors import CnnkitError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))


def save(path: Path, value: int, size=(8, 6), mode="L"):
    """A flat image of `value`; size is (H, W)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else (*size, 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def make_classes(root: Path, counts=(("cat", 3), ("dog", 2), ("ant", 1)), **kw):
    for k, (name, n) in enumerate(counts):
        for i in range(n):
            save(root / name / f"{i}.png", 10 * (k + 1), **kw)


def test_class_folders_sorted_with_labels_and_counts(tmp_path):
    make_classes(tmp_path / "pets")
    ds = load_dataset(f"folder:{tmp_path / 'pets'}")
    assert ds.class_names == ["ant", "cat", "dog"]
    assert ds.image_shape == (8, 6, 1)  # all gray → one channel, (H, W) of the files
    assert ds.x_train.dtype == torch.uint8 and not ds.has_test
    assert torch.bincount(ds.y_train).tolist() == [1, 3, 2]
    # pixels travel with their labels: ant images were saved as 30, cat 10, dog 20
    value_of = {0: 30, 1: 10, 2: 20}
    for x, y in zip(ds.x_train, ds.y_train):
        assert (x == value_of[int(y)]).all()


def test_train_test_layout(tmp_path):
    make_classes(tmp_path / "d" / "train")
    make_classes(tmp_path / "d" / "test", counts=(("cat", 1), ("dog", 1), ("ant", 2)))
    ds = load_folder(tmp_path / "d")
    assert ds.has_test and len(ds.y_train) == 6 and len(ds.y_test) == 4
    assert ds.class_names == ["ant", "cat", "dog"] and ds.info["layout"] == "train/test"


def test_test_classes_must_match_train(tmp_path):
    make_classes(tmp_path / "d" / "train")
    make_classes(tmp_path / "d" / "test", counts=(("cat", 1), ("dog", 1)))
    with pytest.raises(CnnkitError, match="test classes .* differ from train classes"):
        load_folder(tmp_path / "d")


def test_most_common_size_and_colour_decide_the_shape(tmp_path):
    root = tmp_path / "d"
    save(root / "a" / "0.png", 5, size=(10, 12))
    save(root / "a" / "1.png", 5, size=(10, 12))
    save(root / "b" / "0.png", 5, size=(30, 4), mode="RGB")  # odd one out, in colour
    ds = load_folder(root)
    assert ds.image_shape == (10, 12, 3)
    ds = load_folder(root, channels=1, size=(7, 9))
    assert ds.image_shape == (7, 9, 1)


def test_unreadable_files_are_skipped_and_named(tmp_path, capsys):
    make_classes(tmp_path / "d")
    (tmp_path / "d" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "d" / "dog" / "notes.txt").write_text("hi")
    (tmp_path / "d" / "dog" / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored silently
    ds = load_folder(tmp_path / "d")
    assert ds.info["skipped"] == ["cat/broken.png", "dog/notes.txt"]
    assert len(ds.y_train) == 6
    err = capsys.readouterr().err
    assert "cat/broken.png" in err and "dog/notes.txt" in err and ".DS_Store" not in err
    # the cached second load still reports them
    ds2 = load_folder(tmp_path / "d")
    assert ds2.info["cached"] and ds2.info["skipped"] == ds.info["skipped"]
    assert "cat/broken.png" in capsys.readouterr().err


def test_images_in_nested_subfolders_count_for_their_class(tmp_path):
    make_classes(tmp_path / "d")
    save(tmp_path / "d" / "dog" / "more" / "x.png", 20)
    assert torch.bincount(load_folder(tmp_path / "d").y_train).tolist() == [1, 3, 3]


def test_second_load_comes_from_the_cache(tmp_path):
    make_classes(tmp_path / "d")
    first = load_folder(tmp_path / "d")
    assert not first.info["cached"]
    cache = Path(first.info["cache"])
    assert cache.is_file() and cache.is_relative_to(tmp_path / "cache")
    second = load_folder(tmp_path / "d")
    assert second.info["cached"]
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_train, second.y_train)
    assert second.class_names == first.class_names
    # no temp files left behind by the atomic write
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]


def test_cache_follows_the_folder_contents_and_the_request(tmp_path):
    make_classes(tmp_path / "d")
    load_folder(tmp_path / "d")
    assert load_folder(tmp_path / "d", channels=3).info["cached"] is False  # other request
    img = tmp_path / "d" / "cat" / "0.png"
    save(img, 99)
    os.utime(img, ns=(1, 1))  # a changed file, even with an old mtime, has a new stamp
    changed = load_folder(tmp_path / "d")
    assert not changed.info["cached"] and (changed.x_train == 99).any()
    save(tmp_path / "d" / "cat" / "new.png", 10)
    assert len(load_folder(tmp_path / "d").y_train) == 7


def test_damaged_cache_is_rebuilt(tmp_path):
    make_classes(tmp_path / "d")
    cache = Path(load_folder(tmp_path / "d").info["cache"])
    cache.write_bytes(b"garbage")
    ds = load_folder(tmp_path / "d")
    assert not ds.info["cached"] and len(ds.y_train) == 6
    assert load_folder(tmp_path / "d").info["cached"]


@pytest.mark.parametrize("setup, message", [
    (lambda r: None, "does not exist"),
    (lambda r: r.mkdir(), "is empty; expected one subfolder per class"),
    (lambda r: save(r / "loose.png", 1), "has files but no class subfolders"),
    (lambda r: make_classes(r, counts=(("cat", 2),)), "single class .*'cat'"),
    (lambda r: (make_classes(r), (r / "emu").mkdir()), "class folder '.*emu' has no readable images"),
    (lambda r: (make_classes(r), (r / "emu").mkdir(), (r / "emu" / "x.jpg").write_text("no")),
     "class folder '.*emu' has no readable images"),
])
def test_bad_folders_fail_with_one_clear_line(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(CnnkitError, match=message) as e:
        load_dataset(f"folder:{root}")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache" / "folders").exists() or not any((tmp_path / "cache" / "folders").iterdir())


def test_a_file_is_not_a_folder(tmp_path):
    save(tmp_path / "one.png", 3)
    with pytest.raises(CnnkitError, match="is not a folder"):
        load_dataset(f"folder:{tmp_path / 'one.png'}")
