"""Names from the file system or a file are shown safely everywhere and never stop a run.

Class folders are bytes on Linux: one whose name is not UTF-8 (b'cat\\xff') trained, then the
confusion matrix raised (matplotlib cannot draw a lone surrogate) and --resume raised again; one
holding a terminal escape ('dog\\x1b[31mred') was printed raw, recolouring the terminal; class
folders named '..x' or '...' were dropped without a word. Now every such name is made safe in
one place (cnnkit.errors.printable) as it is read, and hidden folders are named in a warning."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.errors import printable
from cnnkit.model.sequential import Sequential

MODEL = "input_shape: [8, 8, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3}\n" \
        "  - Flatten: {}\n  - Dense: {units: 2, activation: softmax}\n"


@pytest.mark.parametrize("raw,shown", [
    (os.fsdecode(b"cat\xff"), "cat\\xff"), ("dog\x1b[31mred", "dog\\x1b[31mred"),
    ("a\nb\tc", "a\\nb\\tc"), ("x\u202ey", "x\\u202ey"), ("\x7f", "\\x7f"),
    ("chat é 猫 ß", "chat é 猫 ß"), ("...", "..."),
])
def test_printable_shows_bytes_and_control_characters_and_keeps_the_rest(raw, shown):
    assert printable(raw) == shown and printable(shown) == shown


@pytest.fixture
def odd_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for k, name in enumerate([b"cat\xff", b"dog\x1b[31mred", b"..x", b"..."]):
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder)
        for i in range(10):
            pixels = (rng.random((8, 8)) * 60 + 60 * k).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, b"%d.png" % i))
    (tmp_path / "m.yaml").write_text(MODEL)
    return tmp_path


def test_a_run_on_class_folders_with_odd_names_finishes_resumes_and_shows_them_safely(
        odd_folder, capsys, monkeypatch):
    monkeypatch.chdir(odd_folder)
    assert main(["train", "--model", "m.yaml", "--dataset", "folder:data", "--epochs", "1",
                 "--out", "runs/a"]) == 0
    first = capsys.readouterr()
    assert main(["train", "--resume", "runs/a", "--epochs", "2"]) == 0
    again = capsys.readouterr()
    run = odd_folder / "runs" / "a"
    assert (run / "confusion_matrix.png").stat().st_size > 1000
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 2  # resumed to epoch 2
    report, page = (run / "report.md").read_text(), (run / "report.html").read_text()
    for text in (report, page, first.out, first.err, again.out, again.err):
        assert "\x1b" not in text and "\udcff" not in text
    assert "cat\\xff" in report and "dog\\x1b[31mred" in report and "cat\\xff" in page
    # hidden folders are not classes, and the load says so
    assert "hidden folder(s) 'data/...', 'data/..x'" in first.err
    assert cnnkit.load(run).class_names == ["cat\\xff", "dog\\x1b[31mred"]


def test_class_and_model_names_read_from_a_saved_model_are_shown_safely(tmp_path):
    model = Sequential.from_config({"input_shape": [4, 4, 1], "layers": [
        {"Flatten": {}}, {"Dense": {"units": 2, "activation": "softmax"}}]})
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["class_names"] = ["\x1b[2Jwipe", "ok"]
    meta["config"]["name"] = "net\x1b]0;title\x07"
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    loaded = cnnkit.load(tmp_path / "m")
    assert loaded.class_names == ["\\x1b[2Jwipe", "ok"]
    assert loaded.name == "net\\x1b]0;title\\x07"


def test_a_layer_name_holding_a_terminal_escape_is_refused_in_one_line(tmp_path):
    """A layer's name keys its weights and is printed by summary and drawn by plot_model: a
    name with a control character is refused, in Python and in a Keras file alike."""
    import io
    import zipfile

    from cnnkit.errors import CnnkitError
    from cnnkit.layers import Dense

    with pytest.raises(CnnkitError, match=r"layer name 'x\\x1b\[2J' cannot name"):
        Dense(2, name="x\x1b[2J")
    model = Sequential.from_config({"input_shape": [4, 4, 1], "layers": [
        {"Flatten": {}}, {"Dense": {"units": 2, "activation": "softmax"}}]})
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][-1]["config"]["name"] = "dense\x1b[2J"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in (files | {"config.json": json.dumps(config).encode()}).items():
            z.writestr(name, data)
    (tmp_path / "bad.keras").write_bytes(buf.getvalue())
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(tmp_path / "bad.keras")
    assert str(e.value).startswith(str(tmp_path / "bad.keras"))
    assert "layer name 'dense\\x1b[2J' cannot name" in str(e.value)


def test_predict_labels_and_prints_images_in_odd_class_folders_safely(odd_folder, capsys,
                                                                       monkeypatch):
    """`cnnkit predict` labels an image by its folder's class, as the class is named (cat\\xff),
    and prints file names safely."""
    monkeypatch.chdir(odd_folder)
    assert main(["train", "--model", "m.yaml", "--dataset", "folder:data", "--epochs", "1",
                 "--out", "runs/a"]) == 0
    capsys.readouterr()
    cat = os.path.join(b"data", b"cat\xff", b"0.png")
    odd_image = os.fsdecode(os.path.join(b"data", b"cat\xff", b"\x1b[2J.png"))
    os.link(cat, os.fsencode(odd_image))
    assert main(["predict", "runs/a", os.fsdecode(cat), odd_image]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\udcff" not in out
    assert "cat\\xff/\\x1b[2J.png:" in out and "(true cat\\xff)" in out
    assert "Right: " in out and " of 2 labelled images" in out


def test_data_show_prints_class_names_as_text_not_markup(tmp_path, capsys):
    """`cnnkit data show` draws its table with rich: a class folder named '[red]cat' is shown
    as those characters, not as a red 'cat'; one holding an escape shows the escape."""
    rng = np.random.default_rng(0)
    for name in ("[red]cat", "dog\x1b[2J"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8), np.uint8)).save(
                tmp_path / "d" / name / f"{i}.png")
    assert main(["data", "show", f"folder:{tmp_path / 'd'}"]) == 0
    out = capsys.readouterr().out
    assert "[red]cat" in out and "dog\\x1b[2J" in out and "\x1b[2J" not in out
