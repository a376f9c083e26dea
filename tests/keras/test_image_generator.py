"""`ImageDataGenerator`: flow over arrays, flow_from_directory over class folders, Keras's
class modes, subsets and batch layout; bad values named."""
from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import CnnkitError
from cnnkit.keras.preprocessing.image import ImageDataGenerator


def test_flow_batches_rescaled_arrays_with_their_labels():
    x = np.arange(10 * 4 * 4 * 1, dtype="float32").reshape(10, 4, 4, 1)
    y = np.arange(10)
    it = ImageDataGenerator(rescale=0.5).flow(x, y, batch_size=4, shuffle=False)
    assert len(it) == 3
    xb, yb = next(it)
    np.testing.assert_array_equal(xb, x[:4] * 0.5)
    np.testing.assert_array_equal(yb, y[:4])
    assert next(it)[0].shape == (4, 4, 4, 1) and next(it)[0].shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(next(it)[1], y[:4])  # it goes round again, as Keras's does
    val = ImageDataGenerator(validation_split=0.2).flow(x, y, batch_size=10, subset="validation")
    assert sorted(next(val)[1].tolist()) == [0, 1]  # Keras: the first fraction validates


def test_augmentation_changes_images_but_keeps_shape_and_range():
    x = np.zeros((6, 16, 16, 1), "float32")
    x[:, 4:12, 6:10] = 200.0
    gen = ImageDataGenerator(rescale=1 / 255, rotation_range=40, width_shift_range=0.2,
                             height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                             fill_mode="nearest")
    xb, _ = next(gen.flow(x, np.zeros(6), batch_size=6, seed=1))
    assert xb.shape == (6, 16, 16, 1) and 0 <= xb.min() and xb.max() <= 200 / 255 + 1e-6
    assert not np.allclose(xb, x / 255)


@pytest.mark.parametrize("class_mode, labels", [
    ("categorical", lambda y: np.eye(3)[y]), ("sparse", lambda y: y), (None, None)])
def test_flow_from_directory_class_modes(tmp_path, class_mode, labels):
    from _keras_folders import write_digit_folders

    write_digit_folders(tmp_path, per_class=(4, 2), size=12)
    it = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        tmp_path / "train", target_size=(10, 10), color_mode="grayscale", class_mode=class_mode,
        batch_size=12, shuffle=False)
    assert it.class_indices == {"0": 0, "1": 1, "2": 2} and it.filenames[0] == "0/0.png"
    batch = next(it)
    if class_mode is None:
        assert batch.shape == (12, 10, 10, 1)
        return
    xb, yb = batch
    assert xb.shape == (12, 10, 10, 1) and xb.dtype == np.float32 and xb.max() <= 1
    np.testing.assert_array_equal(yb, labels(np.repeat([0, 1, 2], 4)))


def test_flow_from_directory_subset_and_bad_values(tmp_path):
    from _keras_folders import write_digit_folders

    write_digit_folders(tmp_path, per_class=(5, 1), size=8)
    gen = ImageDataGenerator(validation_split=0.4)
    train = gen.flow_from_directory(tmp_path / "train", target_size=(8, 8), subset="training")
    val = gen.flow_from_directory(tmp_path / "train", target_size=(8, 8), subset="validation")
    assert (train.samples, val.samples) == (9, 6)  # 2 of each class's 5 images validate
    assert next(val)[0].shape[1:] == (8, 8, 3)  # color_mode 'rgb' by default
    with pytest.raises(CnnkitError, match=r"unknown class_mode 'binaryy'; valid: 'categorical'"):
        gen.flow_from_directory(tmp_path / "train", class_mode="binaryy")
    with pytest.raises(CnnkitError, match=r"class_mode='binary' needs 2 class folders"):
        gen.flow_from_directory(tmp_path / "train", class_mode="binary")
    with pytest.raises(CnnkitError, match=r"unknown color_mode 'grey'"):
        gen.flow_from_directory(tmp_path / "train", color_mode="grey")
    with pytest.raises(CnnkitError, match=r"unknown or unsupported argument featurewise_center=True"):
        ImageDataGenerator(featurewise_center=True)
