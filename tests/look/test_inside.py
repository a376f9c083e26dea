"""What the network sees (cnnkit.look.inside, `cnnkit inspect`): each layer's output as Keras
defines it, Grad-CAM and saliency against hand computations, Adebayo et al. 2018's sanity
checks on a trained network, Grad-CAM on the object that decides the class, every preset,
nothing left attached to the model, and the command's files and errors."""
import json
import resource
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from scipy.stats import spearmanr

import cnnkit
from cnnkit import layers as L
from cnnkit.cli import main
from cnnkit.data import load_dataset
from cnnkit.errors import CnnkitError
from cnnkit.look.inside import feature_maps, first_layer_filters, grad_cam, saliency, save_inside
from cnnkit.model.presets import PRESETS, create_model
from cnnkit.model.sequential import Sequential

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (7, 8, 1), dtype=np.uint8)


def small_model():
    """Conv(relu) → pool → conv(relu) → Flatten → Dense(softmax); known first weights."""
    model = Sequential([L.Conv2D(2, 3, activation="relu", name="c1"),
                        L.MaxPooling2D(2, name="pool"),
                        L.Conv2D(3, 2, activation="relu", name="c2"), L.Flatten(name="flat"),
                        L.Dense(4, activation="softmax", name="out")], input_shape=(7, 8, 1))
    torch.manual_seed(0)
    model.set_layer_weights("c1", [np.random.default_rng(1).normal(size=(3, 3, 1, 2)),
                                   np.array([0.1, -0.3])])
    return model


def conv_by_hand(x, kernel, bias):
    """'valid' cross-correlation of (H, W, C) with a Keras kernel (kh, kw, C, out)."""
    kh, kw, _, out = kernel.shape
    h, w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    y = np.zeros((h, w, out))
    for i in range(h):
        for j in range(w):
            y[i, j] = np.tensordot(x[i:i + kh, j:j + kw], kernel, axes=3) + bias
    return y


def pool_by_hand(x):
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3))


# -- layer outputs ------------------------------------------------------------------------------
def test_feature_maps_are_each_layers_keras_output():
    model = small_model()
    maps = feature_maps(model, IMAGE)
    assert list(maps) == ["c1", "pool", "c2", "flat", "out"]
    assert {n: a.shape for n, a in maps.items()} == {
        info.name: tuple(info.output_shape) for info in model.layer_infos()}
    kernel, bias = model.get_weights()[0]
    pre_relu = conv_by_hand(IMAGE / 255, kernel, bias)
    assert (pre_relu < 0).any()  # so the next line tells post-ReLU from pre-ReLU values
    np.testing.assert_allclose(maps["c1"], np.maximum(pre_relu, 0), atol=1e-6)
    np.testing.assert_allclose(maps["pool"], pool_by_hand(np.maximum(pre_relu, 0)), atol=1e-6)
    np.testing.assert_allclose(maps["out"], model.predict(IMAGE), atol=1e-6)  # softmax included


def test_an_activation_layer_before_a_pooling_outputs_the_unpooled_map():
    # The network runs this pooling before the ReLU (Net.steps): a hook on either module would
    # see the wrong thing. Keras's outputs are the ReLU's full map, then its pooling.
    model = Sequential([L.Conv2D(2, 3, name="c"), L.Activation("relu", name="act"),
                        L.MaxPooling2D(2, name="pool"), L.Flatten(), L.Dense(3)],
                       input_shape=(7, 8, 1))
    steps = model.net.steps
    assert steps.index(model.net.layers["pool"]) < steps.index(model.net.layers["act"])
    maps = feature_maps(model, IMAGE, ["c", "act", "pool"])
    assert maps["act"].shape == (5, 6, 2) and (maps["c"] < 0).any()
    np.testing.assert_allclose(maps["act"], np.maximum(maps["c"], 0))
    np.testing.assert_allclose(maps["pool"], pool_by_hand(maps["act"]))


def test_any_form_of_one_image_gives_the_same_maps(tmp_path):
    model = small_model()
    path = tmp_path / "x.png"
    Image.fromarray(IMAGE[..., 0]).save(path)
    expected = feature_maps(model, IMAGE)["c2"]
    with Image.open(path) as pil:
        forms = [str(path), pil, IMAGE / 255, IMAGE[..., 0], torch.from_numpy(IMAGE)[None]]
        for form in forms:
            np.testing.assert_array_equal(feature_maps(model, form)["c2"], expected)


def test_model_methods_and_layer_selection():
    model = small_model()
    maps = model.feature_maps(IMAGE)
    np.testing.assert_array_equal(model.layer_output("pool", IMAGE), maps["pool"])
    assert list(model.feature_maps(IMAGE, ["c2", "c1", "c2"])) == ["c2", "c1"]
    assert list(model.feature_maps(IMAGE, "flat")) == ["flat"]


def test_looking_inside_leaves_the_training_flags_as_they_were():
    model = small_model()
    model.net.train()
    frozen = set(model.layer_module(model.layer_names()[0]).eval().modules())  # kept in eval
    feature_maps(model, IMAGE)
    grad_cam(model, IMAGE)
    assert all(m.training != (m in frozen) for m in model.net.modules())


def test_first_layer_filters_are_the_keras_kernel():
    model = small_model()
    np.testing.assert_array_equal(first_layer_filters(model), model.get_weights()[0][0])
    assert first_layer_filters(model).shape == (3, 3, 1, 2)


# -- Grad-CAM and saliency by hand --------------------------------------------------------------
def test_grad_cam_under_global_average_pooling_is_the_class_activation_map():
    # logits = W^T mean(A) + b, so each channel's mean gradient is W[k, c] / HW and Grad-CAM is
    # ReLU(sum_k W[k, c] A_k) scaled to [0, 1]: the CAM of Zhou et al. 2016, at input size here
    model = Sequential([L.Conv2D(4, 3, activation="relu", padding="same", name="conv"),
                        L.GlobalAveragePooling2D(), L.Dense(3, name="head")], input_shape=(6, 6, 1))
    torch.manual_seed(3)
    image = RNG.integers(0, 256, (6, 6, 1), dtype=np.uint8)
    fmap = feature_maps(model, image, "conv")["conv"]  # (6, 6, 4)
    w = model.get_weights()[1][0]  # (4, 3)
    for c in range(3):
        cam = np.maximum(fmap @ w[:, c], 0)
        heat, k = grad_cam(model, image, c)
        assert k == c and heat.shape == (6, 6)
        np.testing.assert_allclose(heat, cam / cam.max() if cam.max() > 0 else cam, atol=1e-5)


def test_hirescam_is_grad_cam_under_global_average_pooling():
    model = Sequential([L.Conv2D(4, 3, activation="relu", padding="same", name="conv"),
                        L.GlobalAveragePooling2D(), L.Dense(3, name="head")], input_shape=(6, 6, 1))
    torch.manual_seed(5)
    image = RNG.integers(0, 256, (6, 6, 1), dtype=np.uint8)
    for c in range(3):
        np.testing.assert_allclose(grad_cam(model, image, c, method="hirescam")[0],
                                   grad_cam(model, image, c)[0], atol=1e-5)
    with pytest.raises(CnnkitError, match="unknown CAM method 'cam'; valid: gradcam, hirescam"):
        grad_cam(model, image, method="cam")


def test_behind_a_flatten_head_hirescam_shows_what_grad_cam_averages_away():
    # a trained fast-cnn (Flatten head; Grad-CAM at its last conv, before batch norm): some
    # Grad-CAMs are 0 everywhere (37 of 40 lit here), HiResCAM's light up for every image
    result = cnnkit.run(cnnkit.RunSpec(model="fast-cnn", dataset="digits", epochs=5,
                                       batch_size=64, seed=1, verbose=0))
    images = load_dataset("digits").x_train[:40].numpy()
    grad = [grad_cam(result.model, im)[0].max() > 0 for im in images]
    hires = [grad_cam(result.model, im, method="hirescam")[0].max() > 0 for im in images]
    assert sum(hires) >= 38 and sum(hires) >= sum(grad)


def test_saliency_of_a_linear_model_is_its_weights():
    # z = W^T flatten(x / 255) + b: the gradient per pixel is W[:, c] / 255, the same everywhere
    model = Sequential([L.Flatten(), L.Dense(3)], input_shape=(5, 4, 1))
    w = model.get_weights()[0][0]  # (20, 3), Keras's (H, W, C) order
    for c in range(3):
        expected = np.abs(w[:, c]).reshape(5, 4)
        np.testing.assert_allclose(saliency(model, IMAGE[:5, :4], c), expected / expected.max(),
                                   rtol=1e-5)


def test_grad_cam_defaults_to_the_predicted_class_and_stays_in_range():
    model = small_model()
    heat, k = grad_cam(model, IMAGE)
    assert k == int(model.predict(IMAGE).argmax())
    assert heat.shape == (7, 8) and heat.dtype == np.float32
    assert 0 <= heat.min() and heat.max() <= 1


def test_one_sigmoid_unit_has_a_heat_map_for_each_of_its_two_classes():
    model = Sequential([L.Conv2D(3, 3, activation="relu", padding="same"), L.Flatten(),
                        L.Dense(1, activation="sigmoid")], input_shape=(7, 8, 1))
    maps = [grad_cam(model, IMAGE, c)[0] for c in (0, 1)]
    assert all(m.shape == (7, 8) for m in maps)
    with pytest.raises(CnnkitError, match="class_index=2 is out of range; valid: a class from 0"):
        grad_cam(model, IMAGE, 2)


DENSE_ONLY = Sequential([L.Flatten(), L.Dense(3)], input_shape=(7, 8, 1))


@pytest.mark.parametrize("call, message", [
    (lambda m: feature_maps(m, IMAGE, ["c1", "conv9"]),
     "unknown layer name 'conv9'; valid: c1, pool, c2, flat, out"),
    (lambda m: feature_maps(m, np.stack([IMAGE, IMAGE])),
     "one image at a time; received a batch of 2"),
    (lambda m: feature_maps(m, IMAGE * 1.0), "float pixels must be in [0, 1]"),
    (lambda m: grad_cam(m, IMAGE, class_index=4),
     "class_index=4 is out of range; valid: a class from 0 to 3"),
    (lambda m: grad_cam(m, IMAGE, layer="flat"),
     "layer 'flat' outputs (6,), not feature maps (H, W, C), so Grad-CAM cannot use it; "
     "valid: c1, pool, c2"),
    (lambda m: grad_cam(DENSE_ONLY, IMAGE), "Grad-CAM needs a convolutional model"),
    (lambda m: first_layer_filters(DENSE_ONLY), "no Conv2D layer (Flatten, Dense)"),
])
def test_mistakes_are_one_line_naming_what_is_valid(call, message):
    with pytest.raises(CnnkitError) as err:
        call(small_model())
    assert message in str(err.value) and "\n" not in str(err.value)


# -- Adebayo et al. 2018: explanations must depend on what the network learned -----------------
def digits_cnn():
    # A global-average-pooling head, under which Grad-CAM is the class activation map. Behind a
    # Flatten head on 8×8 digits, most of the trained model's Grad-CAMs are 0 everywhere: each
    # channel's gradient, averaged over positions, comes out negative (the method's limit).
    return Sequential([L.Conv2D(32, 3, activation="relu", padding="same"), L.MaxPooling2D(2),
                       L.Conv2D(64, 3, activation="relu", padding="same"),
                       L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")],
                      input_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(its initial weights, the trained model): 3 epochs on scikit-learn's digits, started from
    weights saved first so that the initialization can be compared."""
    start = tmp_path_factory.mktemp("init") / "model"
    initial = digits_cnn()
    torch.manual_seed(0)
    initial.build()
    initial.save(start)
    # lr 1e-2: the pooling head learns slower than a Flatten one; three epochs reach ~80%
    result = cnnkit.run(cnnkit.RunSpec(model=digits_cnn(), dataset="digits", epochs=3,
                                       batch_size=64, seed=1, verbose=0, lr=1e-2,
                                       init_from=str(start)))
    assert result.metrics["test_accuracy"] > 0.7
    return cnnkit.load(start), result.model


def test_grad_cam_of_the_trained_model_is_not_that_of_random_weights(digits):
    _, trained = digits
    torch.manual_seed(7)
    randomized = Sequential.from_config(trained.get_config())  # same layers, new weights
    randomized.build()
    randomized.preprocessing = dict(trained.preprocessing)
    images = load_dataset("digits").x_train[:40].numpy()
    rhos, lit = [], 0
    for image in images:
        heat, k = grad_cam(trained, image)
        other, _ = grad_cam(randomized, image, k)
        lit += heat.max() > 0
        flat = other.max() == other.min()  # a constant map ranks with nothing
        rhos.append(0.0 if flat else spearmanr(heat.ravel(), other.ravel()).statistic)
    assert lit >= 36  # the trained model's maps say something
    assert np.mean(rhos) < 0.3  # ~-0.2 here; an explanation blind to the weights gives ~1


def test_training_moved_the_first_layer_filters(digits):
    initial, trained = digits
    before, after = first_layer_filters(initial), first_layer_filters(trained)
    assert before.shape == after.shape == (3, 3, 1, 32)
    assert np.linalg.norm(after - before) > 0.2 * np.linalg.norm(before)


# -- Grad-CAM finds the object that decides the class -------------------------------------------
def bars(n: int, seed: int):
    """16×16 noise with one bright 3×5 bar at a random place: lying (class 0) or standing (1).

    Each class has evidence of its own, on the bar. (With a blob top-left vs bottom-right, a
    network may call one class by the *absence* of the other's blob, and that class's Grad-CAM,
    which shows only what speaks for a class, is then 0 or anywhere.)"""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 16, 16), dtype=np.uint8)
    where = rng.integers(0, 12, (n, 2))
    lying = np.zeros((5, 5), dtype=bool)
    lying[1:4] = True
    for i, (r, c) in enumerate(where):
        x[i, r:r + 5, c:c + 5][lying.T if y[i] else lying] = 255
    return x, y, where


def test_grad_cam_peaks_on_the_object():
    x, y, _ = bars(800, seed=0)
    torch.manual_seed(0)
    model = Sequential([L.Conv2D(8, 3, activation="relu", padding="same"), L.MaxPooling2D(2),
                        L.Conv2D(16, 3, activation="relu", padding="same"), L.Flatten(),
                        L.Dense(2, activation="softmax")], input_shape=(16, 16, 1))
    model.compile(lr=1e-2)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, seed=0)
    x_test, y_test, where = bars(60, seed=1)
    assert (model.predict(x_test).argmax(axis=1) == y_test).mean() > 0.95
    on_bar = 0
    for image, label, (r0, c0) in zip(x_test, y_test, where):
        heat, _ = grad_cam(model, image, int(label))
        r, c = np.unravel_index(heat.argmax(), heat.shape)
        on_bar += r0 - 1 <= r <= r0 + 5 and c0 - 1 <= c <= c0 + 5  # its 5×5 box, 1 pixel wider
    assert on_bar >= 54  # of 60; all of them here


# -- every preset, and nothing left behind ------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_shows_its_layers_and_a_heat_map(name, preset_model):
    model = preset_model(name)
    image = RNG.integers(0, 256, model.input_shape, dtype=np.uint8)
    maps = feature_maps(model, image)
    assert {n: a.shape for n, a in maps.items()} == {
        info.name: tuple(info.output_shape) for info in model.layer_infos()}
    h, w, _ = model.input_shape
    heat, k = grad_cam(model, image)
    assert heat.shape == (h, w) and 0 <= heat.min() and heat.max() <= 1
    assert 0 <= k < model.output_shape[0]
    assert saliency(model, image, k).shape == (h, w)


def hooks(net) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in net.modules())


def test_a_thousand_calls_leave_no_hooks_and_no_growing_memory():
    model = small_model()
    for _ in range(50):  # warm-up: lazy imports, the allocator's pools
        feature_maps(model, IMAGE)
        grad_cam(model, IMAGE)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for i in range(1000):
            feature_maps(model, IMAGE)
            if i % 10 == 0:
                grad_cam(model, IMAGE)
                saliency(model, IMAGE)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert hooks(model.net) == 0
    assert end - start < 200_000  # bytes of Python objects still held after 1,000 calls
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024


# -- the pictures -------------------------------------------------------------------------------
def tiles(path) -> int:
    """How many tiles a grid PNG shows: its square blocks of ink (a frame and what is in it)."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    labels, _ = ndimage.label((pixels < 245).any(axis=-1))
    return sum(1 for b in ndimage.find_objects(labels)
               if min(b[0].stop - b[0].start, b[1].stop - b[1].start) >= 20
               and 0.8 <= (b[0].stop - b[0].start) / (b[1].stop - b[1].start) <= 1.25)


def test_save_inside_writes_a_grid_per_conv_and_pooling_layer(tmp_path):
    model = create_model("seed000-mnist")
    image = RNG.integers(0, 256, (28, 28, 1), dtype=np.uint8)
    pred = int(model.predict(image).argmax())
    other = (pred + 1) % 10
    files = save_inside(model, image, tmp_path / "out", class_index=other)
    assert [f.name for f in files] == [
        "feature_maps_conv2d.png", "feature_maps_max_pooling2d.png", "feature_maps_conv2d_1.png",
        "feature_maps_max_pooling2d_1.png", "filters_conv2d.png", f"gradcam_class{pred}.png",
        f"gradcam_class{other}.png", f"hirescam_class{pred}.png", f"saliency_class{pred}.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f.name for f in files)
    assert tiles(files[0]) == 32 and tiles(files[2]) == 64 and tiles(files[4]) == 32
    chosen = save_inside(model, image, tmp_path / "chosen", layers=["conv2d_1", "dense"])
    assert [f.name for f in chosen][:2] == ["feature_maps_conv2d_1.png", "feature_maps_dense.png"]
    assert tiles(chosen[1]) == 16  # Dense(16): a tile per unit


def test_save_inside_writes_nothing_when_asked_for_what_is_not_there(tmp_path):
    model = create_model("seed000-first")
    image = RNG.integers(0, 256, (28, 28, 1), dtype=np.uint8)
    for kwargs in ({"layers": ["conv2d", "conv9"]}, {"class_index": 10}):
        with pytest.raises(CnnkitError):
            save_inside(model, image, tmp_path / "out", **kwargs)
    with pytest.raises(CnnkitError, match="inspect needs a convolutional model"):
        save_inside(DENSE_ONLY, IMAGE, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- cnnkit inspect -----------------------------------------------------------------------------
@pytest.fixture
def digit_png(tmp_path):
    """A digit as a 40×30 RGB file: neither the model's size nor its channels."""
    digit = load_dataset("digits").x_train[0].numpy()[..., 0]
    path = tmp_path / "digit.png"
    Image.fromarray(digit).convert("RGB").resize((30, 40)).save(path)
    return path


def test_inspect_a_saved_model_on_a_colour_file_of_another_size(tmp_path, digits, digit_png,
                                                                 capsys):
    _, trained = digits
    trained.save(tmp_path / "model")
    out = tmp_path / "inside"
    assert main(["inspect", str(tmp_path / "model"), str(digit_png), "--out", str(out),
                 "--class", "7", "--layer", "conv2d"]) == 0
    printed = capsys.readouterr().out
    p = trained.predict(str(digit_png))
    pred = int(p.argmax())
    assert f"predicted class {pred} '{pred}' with probability {p[pred]:.3f}" in printed
    written = sorted(out.iterdir())
    assert {"feature_maps_conv2d.png", "filters_conv2d.png", f"gradcam_class{pred}.png",
            "gradcam_class7.png"} <= {f.name for f in written}
    assert all(str(f) in printed for f in written)


def test_inspect_an_rgb_preset(tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.fromarray(RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(image)
    assert main(["inspect", "seed001-example", str(image), "--out", str(tmp_path / "out")]) == 0
    assert "predicted class" in capsys.readouterr().out
    with Image.open(tmp_path / "out" / "filters_conv2d.png") as filters:
        rgb = np.asarray(filters.convert("RGB")).astype(int)
    assert (np.ptp(rgb, axis=-1) > 60).mean() > 0.05  # the kernels are drawn in colour


def write_dense_model(tmp_path) -> str:
    path = tmp_path / "dense.json"
    path.write_text(json.dumps(DENSE_ONLY.get_config()))
    return str(path)


@pytest.mark.parametrize("make_args, message", [
    (lambda t, img: ["seed000-first", img, "--layer", "conv9"],
     "unknown layer name 'conv9'; valid: conv2d, max_pooling2d, flatten, dense"),
    (lambda t, img: ["seed000-first", str(t / "notes.txt")], "notes.txt': not an image"),
    (lambda t, img: ["seed000-first", str(t / "missing.png")], "missing.png: no such image file"),
    (lambda t, img: ["seed000-first", img, "--class", "10"],
     "--class 10 is out of range; valid: a class from 0 to 9"),
    (lambda t, img: ["seed000-first", img, "--class", "cat"], "--class 'cat' is not a class"),
    (lambda t, img: [write_dense_model(t), img], "inspect needs a convolutional model"),
])
def test_inspect_mistakes_are_one_line_exit_2_and_write_nothing(tmp_path, digit_png, capsys,
                                                                make_args, message):
    (tmp_path / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = main(["inspect", *make_args(tmp_path, str(digit_png)), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cnnkit: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
