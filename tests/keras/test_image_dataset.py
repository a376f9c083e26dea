"""`utils.image_dataset_from_directory`: the same files in the same subsets, classes in the same
order and the same pixels as real Keras 3 gives (its grain format, which needs no TensorFlow);
batches that Keras code's fit / evaluate / predict take; Keras's errors, one line each."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

from cnnkit.errors import CnnkitError
from cnnkit.keras.utils import image_dataset_from_directory


def write_tree(root, size=(8, 8)):
    """3 classes of random RGB images, some in a nested folder, in Keras's 5 formats and
    capitals, plus a text file Keras ignores."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, n in (("cat", 7), ("dog", 5), ("ant", 4)):
        for i in range(n):
            folder = root / c / ("sub" if i % 3 == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            ext = (".png", ".bmp", ".PNG", ".gif")[i % 4]  # lossless: the pixels compare exactly
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{c}{i}{ext}")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


CASES = [dict(validation_split=0.25, subset="both", seed=3),
         dict(validation_split=0.4, subset="training", seed=11),
         dict(validation_split=0.4, subset="validation", seed=11),
         dict(shuffle=False),
         dict(class_names=["dog", "ant"], seed=5),
         dict(label_mode=None, seed=1, validation_split=0.3, subset="validation")]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_same_files_subsets_and_class_order_as_real_keras(tmp_path, keras, kwargs):
    root = write_tree(tmp_path / "tree")
    theirs = keras.utils.image_dataset_from_directory(root, image_size=(8, 8), format="grain",
                                                      verbose=False, **kwargs)
    ours = image_dataset_from_directory(root, image_size=(8, 8), verbose=False, **kwargs)
    theirs, ours = (list(d) if isinstance(d, list) else [d] for d in (theirs, ours))
    assert len(ours) == len(theirs)
    for a, b in zip(theirs, ours):
        assert b.class_names == a.class_names
        assert b.file_paths == a.file_paths and len(b.file_paths) > 0


def test_same_pixels_and_labels_as_real_keras_in_file_order(tmp_path, keras):
    root = write_tree(tmp_path / "tree")
    for mode in ("int", "categorical"):
        kw = dict(image_size=(8, 8), batch_size=64, shuffle=False, label_mode=mode, verbose=False)
        xa, ya = next(iter(keras.utils.image_dataset_from_directory(root, format="grain", **kw)))
        xb, yb = next(iter(image_dataset_from_directory(root, **kw)))
        assert xb.dtype == np.float32 and xb.shape == (16, 8, 8, 3)
        np.testing.assert_array_equal(xb, np.asarray(xa))
        assert yb.dtype == np.asarray(ya).dtype and yb.shape == np.asarray(ya).shape
        np.testing.assert_array_equal(yb, np.asarray(ya))


def test_batches_labels_and_a_new_order_each_pass(tmp_path, capsys):
    root = write_tree(tmp_path / "tree")
    ds = image_dataset_from_directory(root, image_size=(6, 4), batch_size=5, seed=2,
                                      color_mode="grayscale", label_mode="categorical")
    assert "Found 16 files belonging to 3 classes." in capsys.readouterr().out
    assert len(ds) == 4 and ds.class_names == ["ant", "cat", "dog"]
    batches = list(ds)
    assert [x.shape for x, _ in batches] == [(5, 6, 4, 1)] * 3 + [(1, 6, 4, 1)]
    assert batches[0][1].shape == (5, 3) and batches[0][1].sum() == 5
    first, second = (np.concatenate([y.argmax(1) for _, y in ds]) for _ in range(2))
    assert sorted(first.tolist()) == sorted(second.tolist()) == [0] * 4 + [1] * 7 + [2] * 5
    assert first.tolist() != second.tolist()  # each epoch is shuffled again
    assert len(list(ds.take(2))) == 2
    scaled = ds.map(lambda x, y: (x / 255, y.argmax(1)))  # as keras.io's examples map
    x, y = next(iter(scaled))
    assert 0 <= x.min() and x.max() <= 1 and y.shape == (5,) and len(scaled) == 4
    assert next(iter(ds))[0].max() > 1  # the dataset mapped is unchanged
    from cnnkit.keras import preprocessing  # Keras's other name for it

    assert preprocessing.image_dataset_from_directory is image_dataset_from_directory
    binary = image_dataset_from_directory(root, image_size=4, class_names=["dog", "cat"],
                                          label_mode="binary", shuffle=False, batch_size=None)
    x, y = next(iter(binary))
    assert x.shape == (4, 4, 3) and y.tolist() == [0.0]  # unbatched: dog0 first, class 0


def test_fit_evaluate_predict_go_through_the_trainer(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    from cnnkit.keras import layers, models

    digits = load_digits()
    for k in range(3):
        (tmp_path / "digits" / str(k)).mkdir(parents=True)
        for i, img in enumerate(digits.images[digits.target == k][:40]):
            Image.fromarray((img * 15).astype(np.uint8)).save(tmp_path / "digits" / str(k) / f"{i}.png")
    train_ds, val_ds = image_dataset_from_directory(
        tmp_path / "digits", image_size=(8, 8), color_mode="grayscale", batch_size=16,
        validation_split=0.25, subset="both", seed=1)
    assert (len(train_ds), len(val_ds)) == (6, 2)
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Rescaling(1 / 255),
                               layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train_ds, validation_data=val_ds, epochs=4, verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 4
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(val_ds, verbose=0)
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    assert acc == pytest.approx(history.history["val_accuracy"][-1])
    probs = model.predict(val_ds, verbose=0)
    assert probs.shape == (30, 3)
    y_val = np.concatenate([y for _, y in val_ds])  # the validation part is never shuffled
    assert np.mean(probs.argmax(1) == y_val) == pytest.approx(acc)


@pytest.mark.parametrize("kwargs", [
    dict(label_mode="sparse"), dict(color_mode="grey"), dict(validation_split=0.2, subset="training"),
    dict(validation_split=1.5, subset="training", seed=1), dict(subset="test", validation_split=0.2, seed=1),
    dict(subset="training"), dict(image_size=(8, 8, 3)), dict(interpolation="cubic"),
    dict(class_names=["cat", "emu"]), dict(label_mode="binary"), dict(labels="yes"),
    dict(format="numpy")])
def test_bad_values_are_keras_own_message_on_one_line(tmp_path, keras, kwargs):
    root = write_tree(tmp_path / "tree")
    with pytest.raises(ValueError) as theirs:
        keras.utils.image_dataset_from_directory(root, verbose=False,
                                                 **{"format": "grain", **kwargs})
    with pytest.raises(CnnkitError) as ours:
        image_dataset_from_directory(root, verbose=False, **kwargs)
    assert str(ours.value) == " ".join(str(theirs.value).split()) and "\n" not in str(ours.value)


@pytest.mark.parametrize("kwargs, named", [
    (dict(color_mode="rgba"), "color_mode='rgba'"), (dict(interpolation="nearest"), "'bilinear'"),
    (dict(crop_to_aspect_ratio=True), "crop_to_aspect_ratio"), (dict(labels=[0, 1]), "'inferred'")])
def test_what_cnnkit_does_not_do_is_one_line(tmp_path, kwargs, named):
    root = write_tree(tmp_path / "tree")
    with pytest.raises(CnnkitError, match="not supported by cnnkit") as e:
        image_dataset_from_directory(root, **kwargs)
    assert named in str(e.value) and "\n" not in str(e.value)
