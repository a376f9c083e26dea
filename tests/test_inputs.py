"""The input contract (cnnkit.model.inputs): every form a user hands a model is the same pixels
and the same probabilities as the canonical uint8 batch; bad inputs fail with one clear line."""
import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit import layers as L
from cnnkit.cli import main
from cnnkit.data import load_dataset
from cnnkit.errors import CnnkitError
from cnnkit.model.inputs import to_pixels
from cnnkit.model.sequential import Sequential

SHAPE = (8, 8, 1)
RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, (3, *SHAPE), dtype=np.uint8)  # the canonical batch (N, H, W, C)
GRAY = U8[..., 0]  # (N, H, W)


def gray_model(shape=SHAPE):
    torch.manual_seed(0)
    return Sequential([L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                       L.Dense(3, activation="softmax")], input_shape=shape)


def rgba(gray, alpha):
    return np.stack([gray, gray, gray, np.full_like(gray, alpha)], axis=-1)


def readonly_reversed(a):
    """The same values seen through a read-only view with a negative stride (as np.load with
    mmap, or np.flip, hand them out): torch.from_numpy alone refuses both."""
    view = np.flip(a, 0).copy()[::-1]
    view.setflags(write=False)
    return view


def save_png(path, a):
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)
    return path


# Each form: (how to build it from the canonical batch, is it one image, the pixels it means).
FORMS = {
    "uint8 NHWC": (lambda: U8, False, U8),
    "uint8 NHW": (lambda: GRAY, False, U8),
    "one HW": (lambda: GRAY[0], True, U8[:1]),
    "one HWC": (lambda: U8[0], True, U8[:1]),
    "float32 x / 255": (lambda: U8.astype(np.float32) / 255, False, U8),
    "float64 x / 255": (lambda: U8 / 255.0, False, U8),
    "float16 x / 255": (lambda: (U8 / 255.0).astype(np.float16), False, U8),
    "int64": (lambda: U8.astype(np.int64), False, U8),
    "uint16": (lambda: U8.astype(np.uint16), False, U8),
    "bool": (lambda: U8 > 127, False, (U8 > 127).astype(np.uint8) * 255),
    "torch uint8": (lambda: torch.from_numpy(U8), False, U8),
    "torch float x / 255": (lambda: torch.from_numpy(U8).float() / 255, False, U8),
    "nested lists": (lambda: U8.tolist(), False, U8),
    "list of arrays": (lambda: list(GRAY), False, U8),
    "read-only, negative strides": (lambda: readonly_reversed(U8), False, U8),
    "RGB, gray in every channel": (lambda: np.repeat(U8, 3, axis=-1), False, U8),
    "RGBA, opaque": (lambda: rgba(GRAY, 255), False, U8),
    "RGBA, transparent: white": (lambda: rgba(GRAY, 0), False, np.full_like(U8, 255)),
    "PIL image": (lambda: Image.fromarray(GRAY[1]), True, U8[1:2]),
    "PIL RGBA image": (lambda: Image.fromarray(rgba(GRAY, 255)[2], "RGBA"), True, U8[2:3]),
}


@pytest.mark.parametrize("name", FORMS)
def test_every_form_is_the_canonical_pixels_and_probabilities(name):
    make, single, want = FORMS[name]
    x = make()
    pixels, was_single = to_pixels(x, SHAPE)
    assert was_single == single
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == want.shape
    np.testing.assert_array_equal(pixels.numpy(), want)
    model = gray_model()
    probs = model.predict(x)
    expected = model.predict(want)
    np.testing.assert_array_equal(probs, expected[0] if single else expected)


def test_files_and_lists_of_files(tmp_path):
    paths = [save_png(tmp_path / f"{i}.png", U8[i]) for i in range(3)]
    pixels, single = to_pixels(paths[1], SHAPE)
    assert single and np.array_equal(pixels.numpy(), U8[1:2])
    pixels, single = to_pixels([str(p) for p in paths], SHAPE)
    assert not single and np.array_equal(pixels.numpy(), U8)
    model = gray_model()
    np.testing.assert_array_equal(model.predict(paths), model.predict(U8))


def test_canonical_uint8_is_not_copied():
    pixels, _ = to_pixels(U8, SHAPE)
    assert np.shares_memory(pixels.numpy(), U8)
    one, _ = to_pixels(U8[0], SHAPE)
    assert np.shares_memory(one.numpy(), U8)


def test_a_file_is_the_same_pixels_as_a_folder_an_npz_and_an_array(tmp_path):
    """One conversion for every source: a 20x12 RGB image brought to an 8x8 gray model is the
    same pixels predicted from its file, its PIL image, its array, a folder and an npz."""
    y, x = np.mgrid[0:20, 0:12]
    images = [np.stack([x * 20 + k, y * 12, 255 - x * 20], -1).clip(0, 255).astype(np.uint8)
              for k in (0, 9)]  # (20, 12, 3)
    for k, (cls, img) in enumerate(zip("ab", images)):
        (tmp_path / "folder" / cls).mkdir(parents=True)
        save_png(tmp_path / "folder" / cls / "x.png", img)
    np.savez(tmp_path / "d.npz", x_train=np.stack(images), y_train=np.array([0, 1]))
    folder = load_dataset(f"folder:{tmp_path / 'folder'}", channels=1, size=(8, 8)).x_train
    npz = load_dataset(f"npz:{tmp_path / 'd.npz'}", channels=1, size=(8, 8)).x_train
    from_file = to_pixels([tmp_path / "folder" / c / "x.png" for c in "ab"], SHAPE)[0]
    from_pil = to_pixels([Image.open(tmp_path / "folder" / c / "x.png") for c in "ab"], SHAPE)[0]
    from_array = to_pixels(np.stack(images), SHAPE)[0]
    for got in (folder, npz, from_pil, from_array):
        np.testing.assert_array_equal(got.numpy(), from_file.numpy())
    # and the gray formula is Pillow's own, to the last bit
    pil_gray = np.asarray(Image.fromarray(images[0]).convert("L"))
    np.testing.assert_array_equal(to_pixels(images[0], (20, 12, 1))[0][0, ..., 0].numpy(), pil_gray)


def test_any_size_is_resized_to_the_model():
    model = gray_model()
    big = np.kron(U8[0, ..., 0], np.ones((2, 2), np.uint8))  # (16, 16): each pixel doubled
    pixels, single = to_pixels(big, SHAPE)
    assert single and tuple(pixels.shape) == (1, *SHAPE)
    assert np.abs(pixels.numpy().astype(int) - U8[:1]).mean() < 40  # a blurred copy
    assert model.predict(big).shape == (3,)


def test_an_rgb_model_takes_gray_images():
    pixels, _ = to_pixels(GRAY, (8, 8, 3))
    np.testing.assert_array_equal(pixels.numpy(), np.repeat(U8, 3, axis=-1))


def test_fit_and_evaluate_take_the_same_forms():
    """fit(x / 255) and fit(x) train the same model: the floats are the same pixels."""
    x = np.concatenate([U8] * 10)
    y = np.arange(30) % 3
    results = []
    for images in (x, x / 255.0):
        model = gray_model()
        model.compile(optimizer="adam")
        model.fit(images, y, epochs=2, batch_size=10, verbose=0, seed=1)
        results.append(model.evaluate(images, y))
    assert results[0] == results[1]


@pytest.mark.parametrize("x, message", [
    (np.zeros((1, 2, 8, 8, 1), np.uint8), r"shape \(1, 2, 8, 8, 1\) is not an image or a batch"),
    (np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8),
     r"float pixels must be in \[0, 1\] \(found 0\.\.255\); pass uint8 pixels"),
    (np.array([[np.nan, 0.5], [0.25, 1.0]]), r"found NaN, among values 0\.25\.\.1"),
    (np.zeros((2, 8, 8, 2), np.uint8), "images with 2 channels"),
    (U8.astype(np.int16) - 1, r"integer pixels must be in 0\.\.255 \(found -1\.\."),
    (np.zeros((0, 8, 8, 1), np.uint8), "holds no pixels"),
    (np.array(["a", "b"]), "dtype <U1 cannot be images"),
])
def test_bad_inputs_are_one_clear_line(x, message):
    with pytest.raises(CnnkitError, match=message) as e:
        gray_model().predict(x)
    assert "\n" not in str(e.value)


def test_bad_files_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(CnnkitError, match="cannot read '.*notes.png': not an image") as e:
        gray_model().predict(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(CnnkitError, match="nothere.png' does not exist"):
        gray_model().predict([tmp_path / "nothere.png"])
    model = gray_model()
    model.save(tmp_path / "m")
    assert main(["predict", str(tmp_path / "m"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and len(err.strip().splitlines()) == 1


def test_fit_names_the_argument():
    model = gray_model()
    with pytest.raises(CnnkitError, match=r"^validation x: float pixels must be in \[0, 1\]"):
        model.fit(U8, np.arange(3), validation_data=(U8 * 1.0, np.arange(3)), verbose=0)
