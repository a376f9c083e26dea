"""load_dataset: digits, npz, name dispatch, channel/size conversion, unknown names."""
import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit.data.mnist as mnist
from cnnkit.data import DATASET_NAMES, convert_images, dataset_status, load_dataset
from cnnkit.data.base import Dataset
from cnnkit.errors import CnnkitError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))


# --- digits -------------------------------------------------------------------------------

def test_digits_are_sklearns_images_scaled_to_uint8():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.x_train.shape == (1797, 8, 8, 1) and ds.x_train.dtype == torch.uint8
    assert ds.class_names == [str(i) for i in range(10)] and not ds.has_test
    assert torch.equal(ds.y_train, torch.from_numpy(ref.target).long())
    assert (ds.x_train[..., 0].numpy() == np.rint(ref.images * 255 / 16)).all()
    assert int(ds.x_train.max()) == 255 and int(ds.x_train.min()) == 0


@pytest.mark.parametrize("name", ["digits", "DIGITS", " Digits "])
def test_names_are_case_insensitive(name):
    assert load_dataset(name).name == "digits"


# --- dispatch -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnst", "imagenet", "folder", "", "tsv:x.tsv"])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(CnnkitError, match="unknown dataset") as e:
        load_dataset(name)
    assert all(n in str(e.value) for n in DATASET_NAMES) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["folder:", "npz:  ", "csv:", "parquet: ", "hf:"])
def test_prefix_without_a_path(name):
    with pytest.raises(CnnkitError, match="names no path"):
        load_dataset(name)


@pytest.mark.parametrize("name, key", [("mnist", "mnist"), ("Fashion_MNIST", "fashion-mnist"),
                                       ("kmnist", "kmnist"), ("CIFAR10", "cifar10")])
def test_mnist_family_goes_to_the_mnist_loader(monkeypatch, name, key):
    calls = []

    def fake(name, data_dir=None, download=True, progress=True):
        calls.append((name, data_dir, download, progress))
        return Dataset(name, ["a", "b"], torch.zeros(2, 4, 4, 1, dtype=torch.uint8),
                       torch.tensor([0, 1]))

    monkeypatch.setattr(mnist, "load_mnist_family", fake)
    ds = load_dataset(name, data_dir="/d", download=False, progress=False, channels=3, size=(6, 6))
    assert calls == [(key, "/d", False, False)]
    assert ds.image_shape == (6, 6, 3)


def test_dataset_status_lists_every_name(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "locate", lambda name, data_dir=None: tmp_path if name == "kmnist" else None)
    rows = {name: (ok, where) for name, ok, where in dataset_status()}
    assert list(rows) == DATASET_NAMES
    assert rows["kmnist"] == (True, str(tmp_path))
    assert rows["mnist"][0] is False and "download" in rows["mnist"][1]
    assert rows["digits"][0] is True


# --- conversions --------------------------------------------------------------------------

def test_gray_to_rgb_repeats_and_rgb_to_gray_matches_pillow():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    gray = convert_images(torch.from_numpy(rgb), channels=1)
    assert gray.shape == (5, 7, 9, 1) and gray.dtype == torch.uint8
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])
    np.testing.assert_array_equal(gray[..., 0].numpy(), pil)  # Pillow's fixed point, exactly
    back = convert_images(gray, channels=3)
    assert back.shape == (5, 7, 9, 3) and (back == gray).all()


def test_rgba_is_composited_over_white_as_pillow_does():
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (4, 6, 5, 4), dtype=np.uint8)
    rgba[0, ..., 3] = 0  # fully transparent: white, whatever colour hides there
    ours = convert_images(torch.from_numpy(rgba))
    assert ours.shape == (4, 6, 5, 3) and (ours[0] == 255).all()
    white = Image.new("RGBA", (5, 6), (255, 255, 255, 255))
    pil = np.stack([np.asarray(Image.alpha_composite(white, Image.fromarray(im, "RGBA")))[..., :3]
                    for im in rgba])
    np.testing.assert_array_equal(ours.numpy(), pil)


def test_resize_matches_pillow_bilinear():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    for size in [(14, 14), (32, 40)]:
        ours = convert_images(torch.from_numpy(x), size=size)
        assert ours.shape == (3, *size, 1)
        pil = np.stack([np.asarray(Image.fromarray(im[..., 0]).resize(size[::-1], Image.BILINEAR))
                        for im in x])
        assert np.abs(ours[..., 0].numpy().astype(int) - pil).mean() < 1.0


def test_convert_is_a_no_op_when_nothing_changes():
    x = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    assert convert_images(x, channels=1, size=(8, 8)) is x


def test_load_dataset_converts_digits():
    ds = load_dataset("digits", channels=3, size=(28, 28))
    assert ds.image_shape == (28, 28, 3) and len(ds.y_train) == 1797
    assert (ds.x_train[..., 0] == ds.x_train[..., 2]).all()


@pytest.mark.parametrize("kw, message", [({"channels": 2}, "channels 2"), ({"channels": 4}, "channels 4"),
                                         ({"size": (0, 28)}, "size"), ({"size": "big"}, "size")])
def test_bad_conversion_arguments(kw, message):
    with pytest.raises(CnnkitError, match=message):
        load_dataset("digits", **kw)


# --- npz ------------------------------------------------------------------------------------

def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


def keras_like(n=20, m=6, h=5, w=4):
    rng = np.random.default_rng(0)
    return dict(x_train=rng.integers(0, 256, (n, h, w), dtype=np.uint8), y_train=np.arange(n) % 3,
                x_test=rng.integers(0, 256, (m, h, w), dtype=np.uint8), y_test=np.arange(m) % 3)


def test_npz_like_keras_mnist(tmp_path):
    arrays = keras_like()
    ds = load_dataset(write_npz(tmp_path / "m.npz", **arrays))
    assert ds.image_shape == (5, 4, 1) and ds.has_test
    assert ds.class_names == ["0", "1", "2"]
    assert (ds.x_train[..., 0].numpy() == arrays["x_train"]).all()
    assert ds.y_test.tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_npz_float_images_in_either_range(tmp_path, scale):
    values = [0.0, 0.5, 1.0, 0.25] if scale == 1.0 else [0.0, 2.0, 255.0, 100.0]
    x = np.array([values] * 4).reshape(4, 2, 2)
    ds = load_dataset(write_npz(tmp_path / "f.npz", x_train=x.astype(np.float32),
                                y_train=np.array([0, 1, 0, 1])))
    expect = [0, 128, 255, 64] if scale == 1.0 else [0, 2, 255, 100]
    assert ds.x_train[0].flatten().tolist() == expect


def test_npz_colour_one_hot_labels_and_class_names(tmp_path):
    x = np.zeros((4, 3, 3, 3), np.uint8)
    y = np.eye(3)[[0, 2, 1, 2]]  # to_categorical output
    ds = load_dataset(write_npz(tmp_path / "c.npz", x_train=x, y_train=y,
                                class_names=np.array(["cat", "dog", "emu"])))
    assert ds.image_shape == (3, 3, 3) and ds.y_train.tolist() == [0, 2, 1, 2]
    assert ds.class_names == ["cat", "dog", "emu"]


@pytest.mark.parametrize("change, message", [
    ({"x_train": None}, "missing array\\(s\\) x_train"),
    ({"y_test": None}, "missing array\\(s\\) y_test"),
    ({"y_train": -(np.arange(20) % 3)}, "y_train .* negative labels"),
    ({"class_names": np.array(["a", "b"])}, "label 2 but class_names lists 2 classes"),
    ({"y_train": np.arange(19) % 3}, "19 labels but x_train has 20 images"),
    ({"x_train": np.zeros((20, 2, 5, 5), np.uint8)}, "shape \\(20, 2, 5, 5\\)"),
    ({"x_test": np.zeros((6, 9, 9), np.uint8)}, "image shape"),
    ({"x_train": np.full((20, 5, 4), 300.0)}, "expected \\[0, 1\\] or \\[0, 255\\]"),
    ({"x_train": np.full((20, 5, 4), np.nan)}, "NaN"),
    ({"y_train": (np.arange(20) % 3) + 0.5}, "non-integer labels"),
])
def test_bad_npz_fails_with_one_line_naming_the_file(tmp_path, change, message):
    arrays = keras_like()
    for k, v in change.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    name = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CnnkitError, match=message) as e:
        load_dataset(name)
    assert "bad.npz" in str(e.value) and "\n" not in str(e.value)


def test_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_text("this is text")
    with pytest.raises(CnnkitError, match="not an npz archive"):
        load_dataset(f"npz:{tmp_path / 'x.npz'}")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(CnnkitError, match="single .npy array"):
        load_dataset(f"npz:{tmp_path / 'a.npy'}")
    with pytest.raises(CnnkitError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    write_npz(tmp_path / "whole.npz", **keras_like())
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnkitError, match="cut.npz"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}")


def test_npz_class_names_saved_as_objects_is_a_clear_error(tmp_path):
    name = write_npz(tmp_path / "o.npz", **keras_like(), class_names=np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(CnnkitError, match="class_names in .*o.npz.* object array") as e:
        load_dataset(name)
    assert "\n" not in str(e.value)
