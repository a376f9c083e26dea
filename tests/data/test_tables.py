"""csv:, parquet: and hf: sources: Kaggle's pixel rows, file,label tables, parquet files and
folders written by Hugging Face `datasets` (the real library makes those fixtures); predict's
Kaggle submission; bad tables refused in one line with nothing written."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data import load_dataset
from cnnkit.data.mapped import is_mapped
from cnnkit.errors import CnnkitError

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits():
    """300 of scikit-learn's 8x8 digits: (images (N, 8, 8) uint8, labels (N,))."""
    ds = load_dataset("digits")
    return ds.x_train[:300, :, :, 0].numpy(), ds.y_train[:300].numpy()


def write_pixels(path, x, labels=None, label_name="label", label_at=0):
    """A Kaggle-shaped CSV: a header, then one row of pixels (and its label) per image."""
    n = x.reshape(len(x), -1).shape[1]
    columns = [f"pixel{i}" for i in range(n)]
    if labels is not None:
        columns.insert(label_at, label_name)
    with open(path, "w") as f:
        f.write(",".join(columns) + "\n")
        for i, row in enumerate(x.reshape(len(x), -1)):
            cells = [str(v) for v in row]
            if labels is not None:
                cells.insert(label_at, str(labels[i]))
            f.write(",".join(cells) + "\n")
    return path


def test_kaggle_pixel_rows_load_as_the_images_and_labels_written(tmp_path, digits):
    x, y = digits
    ds = load_dataset(f"csv:{write_pixels(tmp_path / 'train.csv', x, y)}")
    assert ds.image_shape == (8, 8, 1) and ds.class_names == [str(i) for i in range(10)]
    assert (ds.x_train[..., 0].numpy() == x).all() and (ds.y_train.numpy() == y).all()
    assert is_mapped(ds.x_train) and os.path.isfile(ds.info["cache"])  # the one cache
    again = load_dataset(f"csv:{tmp_path / 'train.csv'}", size=(16, 16), channels=3)
    assert again.image_shape == (16, 16, 3)


def test_class_names_a_named_label_column_and_rgb_rows(tmp_path, digits):
    x, y = digits
    path = write_pixels(tmp_path / "named.csv", x, [NAMES[k] for k in y], "digit", label_at=5)
    ds = load_dataset(f"csv:{path}", label_column="digit")
    assert ds.class_names == sorted(NAMES)  # names sorted into indices, as folders are
    assert [ds.class_names[k] for k in ds.y_train.numpy()] == [NAMES[k] for k in y]
    assert (ds.x_train[..., 0].numpy() == x).all()
    rgb = np.stack([x, 255 - x, x // 2], -1)  # (N, 8, 8, 3): r,g,b per pixel, row by row
    ds = load_dataset(f"csv:{write_pixels(tmp_path / 'rgb.csv', rgb, y)}")
    assert ds.image_shape == (8, 8, 3) and (ds.x_train.numpy() == rgb).all()


def test_a_file_label_table_reads_images_beside_it_or_under_image_root(tmp_path, digits):
    x, y = digits
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    rows = ["file,label"]
    for i in range(40):
        Image.fromarray(x[i]).save(tmp_path / "imgs" / "a" / f"{i}.png")
        rows.append(f"imgs/a/{i}.png,{NAMES[y[i]]}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(f"csv:{tmp_path / 't.csv'}")
    assert ds.image_shape == (8, 8, 1) and len(ds.x_train) == 40
    assert (ds.x_train[..., 0].numpy() == x[:40]).all()  # in the table's order
    assert [ds.class_names[k] for k in ds.y_train.numpy()] == [NAMES[k] for k in y[:40]]
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "t.csv").write_text("file,label\na/0.png,0\na/1.png,1\na/2.png,1\n")
    ds = load_dataset(f"csv:{tmp_path / 'lists' / 't.csv'}", image_root=tmp_path / "imgs")
    assert (ds.x_train[..., 0].numpy() == x[:3]).all() and ds.y_train.tolist() == [0, 1, 1]


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory, digits):
    """The same 300 digits through Hugging Face `datasets`: a parquet file, a saved Dataset and
    a saved DatasetDict (Image feature, ClassLabel names), and a parquet file of arrays."""
    import datasets
    x, y = digits
    root = tmp_path_factory.mktemp("hf")
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=NAMES)})
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in x],
                                     "label": y.tolist()}, features=features)
    ds.to_parquet(str(root / "images.parquet"))
    ds.save_to_disk(str(root / "saved"))
    both = datasets.DatasetDict({"train": ds, "test": ds.select(range(50))})
    both.save_to_disk(str(root / "dict"))
    datasets.Dataset.from_dict({"pixels": (x / 255.0).tolist(), "label": y.tolist()}).to_parquet(
        str(root / "arrays.parquet"))
    return root


@pytest.mark.parametrize("name,names,test", [("parquet:images.parquet", NAMES, False),
                                             ("hf:saved", NAMES, False), ("hf:dict", NAMES, True),
                                             ("parquet:arrays.parquet", None, False)])
def test_parquet_and_saved_datasets_load_their_images_labels_and_class_names(hf_files, digits,
                                                                             name, names, test):
    x, y = digits
    kind, _, rel = name.partition(":")
    ds = load_dataset(f"{kind}:{hf_files / rel}")
    assert ds.class_names == (names or [str(i) for i in range(10)])
    assert (ds.x_train[..., 0].numpy() == x).all() and (ds.y_train.numpy() == y).all()
    assert ds.has_test == test and (not test or (ds.x_test[..., 0].numpy() == x[:50]).all())
    assert is_mapped(ds.x_train)


def test_predict_writes_a_kaggle_submission_from_a_test_csv(tmp_path, capsys, digits):
    x, y = digits
    write_pixels(tmp_path / "train.csv", x, y)
    write_pixels(tmp_path / "test.csv", x[:25])  # no label column: a set to predict
    run = tmp_path / "run"
    assert main(["train", "--model", "fast-cnn-dense", "--dataset", f"csv:{tmp_path / 'train.csv'}",
                 "--epochs", "1", "--seed", "0", "--out", str(run)]) == 0
    capsys.readouterr()
    sub = tmp_path / "submission.csv"
    assert main(["predict", str(run), str(tmp_path / "test.csv"), "--submission", str(sub)]) == 0
    assert "Submission: " in capsys.readouterr().out
    lines = sub.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 26
    ids, labels = zip(*(line.split(",") for line in lines[1:]))
    assert list(ids) == [str(i) for i in range(1, 26)]
    probs = cnnkit.load(run / "best").predict(x[:25, :, :, None])
    assert [int(v) for v in labels] == probs.argmax(1).tolist()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text((tmp_path / "test.csv").read_text() + "1,2,3\n")  # line 27
    one_line_exit_2(capsys, ["predict", str(run), str(ragged), "--submission",
                             str(tmp_path / "no.csv")], "line 27 has 3 fields; the header has 64")
    assert not (tmp_path / "no.csv").exists()


def one_line_exit_2(capsys, argv, *words):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("cnnkit: error:"), err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


def bad_tables(tmp_path, digits):
    x, y = digits
    good = write_pixels(tmp_path / "good.csv", x[:20], y[:20])
    lines = good.read_text().splitlines()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(lines[:7] + [lines[7] + ",0"] + lines[8:]) + "\n")  # line 8
    odd = write_pixels(tmp_path / "odd.csv", x[:20].reshape(20, -1)[:, :60], y[:20])
    labels = write_pixels(tmp_path / "labels.csv", x[:20], [*y[:6], "2.5", *y[7:20]])
    mixed = write_pixels(tmp_path / "mixed.csv", x[:20], [*y[:6], "cat", *y[7:20]])
    pixel = tmp_path / "pixel.csv"
    pixel.write_text("\n".join(lines[:4] + [lines[4].replace(",0,", ",300,", 1)] + lines[5:]))
    (tmp_path / "root").mkdir()
    Image.fromarray(x[0]).save(tmp_path / "root" / "0.png")
    (tmp_path / "root" / "t.csv").write_text("file,label\n0.png,0\n../secret.png,1\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [b"x"], "label": [0]}), tmp_path / "p.parquet")
    return [
        (f"csv:{ragged}", [], ["line 8 has 66 fields; the header has 65"]),
        (f"csv:{odd}", [], ["60 pixel columns", "not a square image"]),
        (f"csv:{labels}", [], ["line 8: label '2.5' is neither a class index"]),
        (f"csv:{mixed}", [], ["line 8: label 'cat' is neither a class index", "most are integers"]),
        (f"csv:{pixel}", [], ["line 5, column",
                              "'300' is not a pixel value; valid: integers 0..255"]),
        (f"csv:{tmp_path / 'root' / 't.csv'}", [], ["line 3: file '../secret.png' is outside the "
                                                    "image root"]),
        (f"parquet:{tmp_path / 'p.parquet'}", ["--label-column", "digit"],
         ["has no column 'digit' (--label-column); its columns: image, label"]),
        (f"csv:{good}", ["--label-column", "digit"], ["has no column 'digit'"]),
    ]


@pytest.mark.parametrize("case", range(8))
def test_a_bad_table_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch,
                                                            digits, case):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNKIT_DATA", str(cache))
    dataset, flags, words = bad_tables(tmp_path, digits)[case]
    run = tmp_path / "run"
    one_line_exit_2(capsys, ["train", "--model", "fast-cnn-dense", "--dataset", dataset,
                             "--epochs", "1", "--out", str(run), *flags], *words)
    assert not run.exists()
    assert not [f for f in cache.rglob("*") if f.is_file()]  # no cache file, no temporary one
    one_line_exit_2(capsys, ["data", "show", dataset, *flags], *words)


def test_table_options_are_refused_where_they_mean_nothing(tmp_path, capsys, digits):
    with pytest.raises(CnnkitError, match="label_column='x' is for csv:, parquet: and hf:"):
        load_dataset("digits", label_column="x")
    path = write_pixels(tmp_path / "p.csv", digits[0][:20], digits[1][:20])
    with pytest.raises(CnnkitError, match="--image-root is for a table of image files"):
        load_dataset(f"csv:{path}", image_root=tmp_path)


def test_a_run_records_its_label_column_for_evaluate_and_cv_takes_it(tmp_path, capsys, digits):
    x, y = digits
    path = write_pixels(tmp_path / "named.csv", x, [NAMES[k] for k in y], "digit")
    run = tmp_path / "run"
    assert main(["train", "--model", "fast-cnn-dense", "--dataset", f"csv:{path}", "--label-column",
                 "digit", "--epochs", "1", "--seed", "0",
                 "--out", str(run)]) == 0
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["label_column"] == "digit" and options["image_root"] is None
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0  # the run's own test split, read as it was
    assert "accuracy" in capsys.readouterr().out.lower()
    assert cnnkit.load(run / "best").class_names == sorted(NAMES)
    assert main(["cv", "--model", "fast-cnn-dense", "--dataset", f"csv:{path}", "--label-column",
                 "digit", "--folds", "2", "--epochs", "1", "--seed", "0",
                 "--out", str(tmp_path / "cv")]) == 0
    assert len(json.loads((tmp_path / "cv" / "folds.json").read_text())["folds"]) == 2


def test_tune_sets_the_label_column_on_every_trial(tmp_path, capsys, digits):
    import yaml

    x, y = digits
    path = write_pixels(tmp_path / "named.csv", x, [NAMES[k] for k in y], "digit")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "base": {"model": "fast-cnn-dense", "dataset": f"csv:{path}", "epochs": 1,
                 "val_split": 0.2},
        "space": {"lr": {"choice": [0.001]}}}))
    study = tmp_path / "study"
    assert main(["tune", str(space), "--sampler", "grid", "--label-column", "digit",
                 "--out", str(study), "--quiet"]) == 0
    [trial] = sorted((study / "trials").iterdir())
    assert json.loads((trial / "config.json").read_text())["options"]["label_column"] == "digit"
    assert main(["tune", "--resume", str(study), "--label-column", "digit"]) == 2
    assert "--label-column cannot be given with --resume" in capsys.readouterr().err
