"""`cnnkit data list | show | augment`, run in-process: exit codes, messages, files."""
import json

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnkit: error:"), err
    for w in words:
        assert w in lines[0]


def test_list_shows_every_name(capsys):
    code, out, _ = run(capsys, "data", "list")
    assert code == 0
    for name in ["mnist", "fashion-mnist", "kmnist", "cifar10", "digits", "folder:PATH", "npz:PATH"]:
        assert name in out
    code, out, _ = run(capsys, "data", "list", "--json")
    rows = json.loads(out)
    assert {r["name"]: r["offline"] for r in rows}["digits"] is True


def test_show_prints_the_description_as_json(capsys):
    code, out, _ = run(capsys, "data", "show", "digits", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["splits"]["train"]["count"] == 1797 and "test" not in info["splits"]
    assert info["image_shape"] == [8, 8, 1] and info["class_names"][0] == "0"
    assert sum(info["splits"]["train"]["class_counts"].values()) == 1797
    assert 0 < info["pixels"]["mean"] < 255 and info["pixels"]["max"] == 255


def test_show_writes_a_grid_and_prints_a_table(capsys, tmp_path):
    out_png = tmp_path / "out" / "grid.png"
    code, out, _ = run(capsys, "data", "show", "digits", "--out", str(out_png), "--n", "12")
    assert code == 0
    assert "1797" in out and "images per class" in out and f"wrote {out_png}" in out
    with Image.open(out_png) as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert sorted(p.name for p in out_png.parent.iterdir()) == ["grid.png"]


def test_show_converts_and_shows_the_test_split_of_an_npz(capsys, tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(6) % 2, x_test=x[:2], y_test=np.array([0, 1]))
    code, out, _ = run(capsys, "data", "show", f"npz:{tmp_path / 'd.npz'}", "--json", "--split", "test",
                       "--size", "8x10", "--channels", "3", "--out", str(tmp_path / "t.png"))
    assert code == 0
    info = json.loads(out)
    assert info["image_shape"] == [8, 10, 3] and info["splits"]["test"]["count"] == 2
    assert (tmp_path / "t.png").is_file()


def test_augment_writes_the_original_and_its_variants(capsys, tmp_path):
    out_png = tmp_path / "aug.png"
    code, out, err = run(capsys, "data", "augment", "digits", "--out", str(out_png),
                         "--rotation-range", "40", "--width-shift-range", "0.2",
                         "--height-shift-range", "0.2", "--shear-range", "0.2", "--zoom-range", "0.2",
                         "--horizontal-flip", "--fill-mode", "constant", "--cval", "0",
                         "--index", "5", "--n", "8", "--size", "28x28", "--seed", "3")
    assert code == 0 and f"wrote {out_png}" in out and err == ""
    with Image.open(out_png) as im:
        assert im.format == "PNG"


def test_augment_with_nothing_on_says_so(capsys, tmp_path):
    code, _, err = run(capsys, "data", "augment", "digits", "--out", str(tmp_path / "a.png"), "--n", "2")
    assert code == 0 and "no augmentation option is on" in err


@pytest.mark.parametrize("argv, words", [
    (["data", "show", "mnst"], ["unknown dataset 'mnst'", "digits"]),
    (["data", "show", "digits", "--split", "test"], ["no test split"]),
    (["data", "show", "digits", "--split", "val"], ["unknown split 'val'"]),
    (["data", "show", "digits", "--channels", "2"], ["channels 2"]),
    (["data", "show", "digits", "--n", "0"], ["--n must be at least 1"]),
    (["data", "show", "digits", "--out", "OUT.txt"], ["unknown image file type '.txt'"]),
    (["data", "show", "folder:NOWHERE"], ["does not exist"]),
    (["data", "augment", "digits", "--out", "OUT.png", "--fill-mode", "nerest"],
     ["unknown fill_mode 'nerest'", "nearest"]),
    (["data", "augment", "digits", "--out", "OUT.png", "--index", "1797"], ["--index 1797 is out of range", "0..1796"]),
    (["data", "augment", "digits", "--out", "OUT.png", "--zoom-range", "-1"], ["zoom_range"]),
    (["data", "augment", "digits", "--out", "OUT.png", "--n", "0"], ["--n must be at least 1"]),
])
def test_errors_are_one_line_exit_2_and_write_nothing(capsys, tmp_path, argv, words):
    argv = [a.replace("OUT", str(tmp_path / "grid")).replace("NOWHERE", str(tmp_path / "none"))
            for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "grid.png")]
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, err, *words)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


def test_bad_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "show", "digits", "--size", "big"])
    assert e.value.code == 2
    assert "invalid size 'big'" in capsys.readouterr().err
