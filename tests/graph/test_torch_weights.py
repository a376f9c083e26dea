"""PyTorch weights in the applications (issue 28, item 1): torchvision's vgg16, mobilenet_v2 and
efficientnet_b0 and timm's tf_efficientnet_b0 / efficientnet_b0 state dicts, from .pth (read
with weights_only) or .safetensors, load by their own names into cnnkit's networks, built to
follow each file's padding, batch norm and preprocessing, and predict what the PyTorch network
predicts. torchvision and timm are not installed (they need another torch): the reference
networks are plain torch (_torch_sources.py), written from those libraries' sources."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import cnnkit
import cnnkit.keras.applications as kapps
import cnnkit.model.applications as apps
from cnnkit.errors import CnnkitError
from cnnkit.model.applications import load_weights

from _torch_sources import REFERENCES, SIZE, randomised, save_state

SOURCE_NAMES = {"vgg16": "torchvision's vgg16", "mobilenet_v2": "torchvision's mobilenet_v2",
                "efficientnet_b0": "torchvision's efficientnet_b0",
                "tf_efficientnet_b0": "timm's tf_efficientnet_b0",
                "timm_efficientnet_b0": "timm's efficientnet_b0"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{source: (builder, reference network, its file)}, each written once."""
    torch.manual_seed(0)
    out, root = {}, tmp_path_factory.mktemp("torch_weights")
    for source, (builder, make, name) in REFERENCES.items():
        net = randomised(make())
        out[source] = builder, net, save_state(net.state_dict(), root / name)
    return out


def image_batch(seed=1):
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def nhwc(x):
    return x.permute(0, 2, 3, 1).numpy()


def numel(tensors):
    return sum(t.numel() for k, t in tensors.items()
               if t.is_floating_point() and not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("source", list(REFERENCES))
def test_predicts_what_the_pytorch_network_predicts(files, source, capsys):
    builder, ref, path = files[source]
    model = getattr(apps, builder)(weights=str(path), input_shape=(SIZE, SIZE, 3), classes=10,
                                   classifier_activation=None)
    x = image_batch()
    with torch.no_grad():
        expected = ref(x).numpy()
    np.testing.assert_allclose(model(nhwc(x)), expected, atol=1e-4, rtol=1e-4)
    assert np.abs(expected).max() > 0.1  # a network that computes something
    # every tensor of the file went somewhere, and the network holds nothing else
    assert numel(model.net.state_dict()) == numel(ref.state_dict())
    assert f"cnnkit: weights from {SOURCE_NAMES[source]}: " in capsys.readouterr().err
    assert model.preprocessing == {"normalize": "standardize", "mean": [0.485, 0.456, 0.406],
                                   "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("source", ["vgg16", "mobilenet_v2", "tf_efficientnet_b0"])
def test_include_top_false_skips_the_classifier(files, source):
    builder, ref, path = files[source]
    model = getattr(apps, builder)(weights=str(path), input_shape=(SIZE, SIZE, 3),
                                   include_top=False)
    x = image_batch(2)
    with torch.no_grad():
        expected = nhwc(ref.features(x))
    # the last feature maps, thousands of values each summing ~100 products through 16 blocks:
    # to 1e-4 of their largest value
    np.testing.assert_allclose(model(nhwc(x)), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_the_source_is_followed_and_says_so(files, capsys):
    """torchvision's MobileNetV2 pads symmetrically and uses eps 1e-5: the network built for its
    file records both in its layers, as Keras's records its own."""
    _, _, path = files["mobilenet_v2"]
    model = apps.MobileNetV2(weights=str(path), input_shape=(SIZE, SIZE, 3), classes=10)
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["cnnkit: weights from torchvision's mobilenet_v2: PyTorch's symmetric "
                    "padding, batch norm epsilon 1e-05 and PyTorch's preprocessing (ImageNet "
                    "mean and std: imagenet_utils.preprocess_input(x, mode='torch'))"]
    layers = {next(iter(e.values()))["name"]: e for e in model.get_config()["layers"]}
    assert layers["Conv1_pad"] == {"ZeroPadding2D": {"padding": [[1, 1], [1, 1]],
                                                     "name": "Conv1_pad"}}
    assert layers["block_1_pad"]["ZeroPadding2D"]["padding"] == [[1, 1], [1, 1]]
    assert layers["bn_Conv1"]["BatchNormalization"]["epsilon"] == 1e-5
    keras_built = apps.MobileNetV2(input_shape=(SIZE, SIZE, 3), classes=10)
    keras_layers = {next(iter(e.values()))["name"]: e for e in keras_built.get_config()["layers"]}
    assert keras_layers["block_1_pad"]["ZeroPadding2D"]["padding"] == [[0, 1], [0, 1]]
    assert "Conv1_pad" not in keras_layers


def test_a_saved_model_reloads_predicts_and_exports_the_same(files, tmp_path):
    """The padding and epsilon are in the layers, the preprocessing in model.json: the saved
    model reloads from its directory alone, and cnnkit's own predict (uint8 pixels in) and its
    ONNX export apply the file's preprocessing."""
    from cnnkit.serve.onnx import export_onnx

    _, ref, path = files["mobilenet_v2"]
    model = apps.MobileNetV2(weights=str(path), input_shape=(SIZE, SIZE, 3), classes=10)
    model.save(tmp_path / "saved")
    again = cnnkit.load(tmp_path / "saved")
    pixels = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    assert again.preprocessing == model.preprocessing
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0
         - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        expected = torch.softmax(ref(x.float()), 1).numpy()
    np.testing.assert_allclose(again(nhwc(x.float())), expected, atol=1e-5)
    np.testing.assert_allclose(again.predict(pixels), expected, atol=1e-5)
    export_onnx(tmp_path / "saved", tmp_path / "m.onnx", check=False)
    np.testing.assert_allclose(cnnkit.Predictor(tmp_path / "m.onnx").predict(pixels), expected,
                               atol=1e-5)


def test_checkpoints_and_the_keras_namespace(files, tmp_path):
    """A training checkpoint holding the state dict under "state_dict" or "model" loads, also
    with DataParallel's "module." names; the cnnkit.keras builders keep the file's
    preprocessing."""
    _, ref, _ = files["mobilenet_v2"]
    parallel = {f"module.{k}": v for k, v in ref.state_dict().items()}
    for key, name, state in (("state_dict", "ckpt.pt", ref.state_dict()),
                             ("model", "ckpt.bin", parallel)):
        path = save_state({key: state, "epoch": 3}, tmp_path / name)
        model = kapps.MobileNetV2(weights=str(path), input_shape=(SIZE, SIZE, 3), classes=10,
                                  classifier_activation=None)
        with torch.no_grad():
            expected = ref(image_batch()).numpy()
        np.testing.assert_allclose(model.predict(nhwc(image_batch()), verbose=0), expected,
                                   atol=1e-4, rtol=1e-4)
        assert model.preprocessing["normalize"] == "standardize"


def test_load_weights_into_a_network_built_without_them(files):
    """VGG16's layers are torchvision's: load_weights (the entry point a backbone's --weights
    FILE uses) fills a VGG16 built with weights=None and gives it the file's preprocessing."""
    _, ref, path = files["vgg16"]
    model = apps.VGG16(input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None)
    assert model.preprocessing == {"normalize": "unit"}
    load_weights(model, path)
    with torch.no_grad():
        expected = ref(image_batch()).numpy()
    np.testing.assert_allclose(model(nhwc(image_batch())), expected, atol=1e-4, rtol=1e-4)
    assert model.preprocessing["mean"] == [0.485, 0.456, 0.406]


def test_timm_config_json_names_the_model(files, tmp_path):
    """timm's two EfficientNet-B0s share key names: its config.json (the hub's layout) tells
    which, and its mean and std become the model's preprocessing."""
    _, ref, path = files["tf_efficientnet_b0"]
    hub = tmp_path / "hub"
    save_state(ref.state_dict(), hub / "model.safetensors")
    (hub / "config.json").write_text(json.dumps({
        "architecture": "tf_efficientnet_b0",
        "pretrained_cfg": {"tag": "ap_in1k", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    model = apps.EfficientNetB0(weights=str(hub / "model.safetensors"),
                                input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None)
    with torch.no_grad():
        expected = ref(image_batch()).numpy()
    np.testing.assert_allclose(model(nhwc(image_batch())), expected, atol=1e-4, rtol=1e-4)
    assert model.preprocessing == {"normalize": "standardize", "mean": [0.5] * 3,
                                   "std": [0.5] * 3}
    os.remove(hub / "config.json")
    with pytest.raises(CnnkitError, match="share these tensor names.*config.json"):
        apps.EfficientNetB0(weights=str(hub / "model.safetensors"), input_shape=(SIZE, SIZE, 3),
                            classes=10)


# -- refusals: one line each, nothing loaded, nothing run ----------------------------------------
def test_resnet50_files_are_refused_as_v1_5(tmp_path):
    state = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
             "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1), "fc.weight": torch.zeros(10, 2048)}
    path = save_state(state, tmp_path / "resnet50.pth")
    with pytest.raises(CnnkitError) as e:
        apps.ResNet50(weights=str(path), input_shape=(SIZE, SIZE, 3), classes=10)
    assert "ResNet v1.5 (stride 2 on the 3x3 convolution, no convolution biases)" in str(e.value)
    assert "Keras's ResNet50, which cnnkit builds, is v1" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    path = tmp_path / "evil.pth"
    torch.save({"features.0.0.weight": torch.zeros(1), "extra": Payload()}, path)
    with pytest.raises(CnnkitError, match=r"evil.pth: refused: .*weights_only=True"):
        apps.MobileNetV2(weights=str(path), input_shape=(SIZE, SIZE, 3))
    assert not marker.exists()


def _broken(files, tmp_path, change):
    _, ref, _ = files["mobilenet_v2"]
    state = dict(ref.state_dict())
    change(state)
    return str(save_state(state, tmp_path / "broken.safetensors"))


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("features.3.conv.1.0.weight"),
     "missing features.3.conv.1.0.weight"),
    (lambda s: s.update({"features.19.weight": torch.zeros(3), "head.bias": torch.zeros(3)}),
     "unexpected features.19.weight, head.bias"),
    (lambda s: s.update({"features.2.conv.2.weight": torch.zeros(24, 96, 3, 3)}),
     r"misshaped features.2.conv.2.weight \(24, 96, 3, 3\) for layer 'block_1_project' "
     r"\(24, 96, 1, 1\)"),
])
def test_tensors_that_do_not_fit_are_named(files, tmp_path, change, message):
    path = _broken(files, tmp_path, change)
    with pytest.raises(CnnkitError, match=message):
        apps.MobileNetV2(weights=path, input_shape=(SIZE, SIZE, 3), classes=10)


def test_a_1000_class_top_into_10_classes_is_misshaped(files, tmp_path):
    path = _broken(files, tmp_path, lambda s: s.update(
        {"classifier.1.weight": torch.zeros(1000, 1280), "classifier.1.bias": torch.zeros(1000)}))
    with pytest.raises(CnnkitError, match=r"misshaped classifier.1.weight \(1000, 1280\)"):
        apps.MobileNetV2(weights=path, input_shape=(SIZE, SIZE, 3), classes=10)
    apps.MobileNetV2(weights=path, input_shape=(SIZE, SIZE, 3), include_top=False)  # top skipped


def test_the_wrong_network_or_a_keras_built_one_is_refused(files):
    _, _, path = files["mobilenet_v2"]
    with pytest.raises(CnnkitError, match="holds torchvision's mobilenet_v2 weights; build "
                                          r"MobileNetV2\(weights=...\)"):
        apps.VGG16(weights=str(path), input_shape=(SIZE, SIZE, 3), classes=10)
    keras_built = apps.MobileNetV2(input_shape=(SIZE, SIZE, 3), classes=10)
    before = {k: v.clone() for k, v in keras_built.net.state_dict().items()}
    with pytest.raises(CnnkitError, match=r"built for Keras's \(TensorFlow's 'same' padding in "
                                          r"the strided 'Conv1'\); build it with "
                                          r"MobileNetV2\(weights=PATH\)"):
        load_weights(keras_built, path)
    assert all(torch.equal(before[k], v) for k, v in keras_built.net.state_dict().items())
    _, _, tf_path = files["tf_efficientnet_b0"]
    with pytest.raises(CnnkitError, match="'rescaling' scales the input inside the network"):
        load_weights(apps.EfficientNetB0(input_shape=(SIZE, SIZE, 3), classes=10), tf_path)


def test_vgg_top_from_another_image_size_is_misshaped(files):
    """fc1 takes 512 x (size / 32)^2 inputs: torchvision's file, trained on 224-pixel images,
    has 512x7x7; this test's file 512x2x2 (64 pixels), so a 96-pixel VGG16 with its top (512x3x3)
    refuses it, where include_top=False takes the same file."""
    path = str(files["vgg16"][2])
    with pytest.raises(CnnkitError, match=r"misshaped classifier.0.weight \(4096, 2048\) for "
                                          r"layer 'fc1' \(4096, 4608\)"):
        apps.VGG16(weights=path, input_shape=(96, 96, 3), classes=10)
    apps.VGG16(weights=path, input_shape=(96, 96, 3), include_top=False)


def test_files_that_are_not_state_dicts(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CnnkitError, match="junk.safetensors: unreadable PyTorch weights .a safetensors header length"):
        apps.MobileNetV2(weights=str(junk), input_shape=(SIZE, SIZE, 3))
    other = save_state({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CnnkitError, match="name none of the networks cnnkit maps"):
        apps.MobileNetV2(weights=str(other), input_shape=(SIZE, SIZE, 3))
