"""keras.applications' networks through `cnnkit export` (issue 28): a MobileNetV2 fine-tuned
with its backbone frozen through cnnkit.keras, and VGG16, ResNet50 and EfficientNetB0, export
and pass the parity check, and onnxruntime's top-1 is cnnkit's.

No ImageNet weights can be downloaded here, and freshly initialised networks are no test of an
export: their features fade to a constant through the depth (every image gets the same
probabilities, which any graph matches). The stand-in for pretrained weights keeps the signal
alive as trained weights do: batch-norm statistics measured on the images (He-normal kernels
where a network has no batch norm) (cnnkit's precise-BN pass), so the probabilities differ from image to image."""
import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

import cnnkit.keras as K
from cnnkit.cli import main
from cnnkit.keras import applications, layers
from cnnkit.model.inputs import network_input
from cnnkit.model.predict import predict_proba
from cnnkit.serve.onnx import export_onnx
from cnnkit.train.precise_bn import recompute

SIZE = 32  # the applications' smallest input: each network exports and checks in seconds


def colour_images(n, seed):
    """uint8 noise images (n, 32, 32, 3) whose class (0..2) is the channel that is brighter."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 256, (n, SIZE, SIZE, 3)) + 60 * np.eye(3)[y][:, None, None, :] - 30
    return np.clip(x, 0, 255).astype(np.uint8), y


def stand_in_weights(model, pixels):
    """Batch-norm statistics of `pixels` (uint8) for every layer of `model` (He-normal kernels
    where it has none), in place (see the module's docstring)."""
    norms = [m for m in model.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:  # VGG16: nothing rescales the signal, so kernels that keep it through ReLUs
        torch.manual_seed(0)
        for m in model.net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    x = network_input(model, torch.as_tensor(pixels))  # as predict and the export feed it
    recompute(model.net, norms, [torch.arange(len(x))], lambda idx: model.net(x[idx]))


def onnx_probabilities(path, pixels):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": pixels})[0]


def test_a_fine_tuned_mobilenetv2_exports_and_onnxruntime_agrees(tmp_path, capsys):
    x, y = colour_images(96, seed=0)
    x_test, y_test = colour_images(30, seed=1)
    data = tmp_path / "colours.npz"
    np.savez(data, x_train=x, y_train=y, x_test=x_test, y_test=y_test)

    base = applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False,
                                    weights=None)
    inputs = K.Input((SIZE, SIZE, 3))
    features = base(layers.Rescaling(2.0, offset=-1.0)(inputs))  # [0, 1] -> MobileNet's [-1, 1]
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(features))
    model = K.Model(inputs, outputs)
    stand_in_weights(model, x)
    backbone = copy.deepcopy(base.net.state_dict())
    base.trainable = False
    model.compile(optimizer=K.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x / 255.0, y, epochs=3, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # frozen: not one backbone weight or batch-norm statistic moved, the head did learn
    after = base.net.state_dict()
    assert all(torch.equal(backbone[k], after[k]) for k in backbone)

    saved, onnx = tmp_path / "finetuned", tmp_path / "finetuned.onnx"
    model.save(saved)
    assert main(["export", str(saved), "--out", str(onnx), "--dataset", f"npz:{data}"]) == 0
    report = capsys.readouterr().out
    assert "top-1 agreement 33 of 33 (100.00%)" in report  # 30 test images + 3 edge images

    want = model.predict(x_test / 255.0, verbose=0)
    got = onnx_probabilities(onnx, x_test)
    assert want.std(axis=0).max() > 0.05  # the probabilities differ from image to image
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got.argmax(1).tolist() == want.argmax(1).tolist()


def float64_probabilities(model, pixels):
    net = copy.deepcopy(model.net).double().eval()
    with torch.no_grad():
        logits = net(network_input(model, torch.as_tensor(pixels)).double())
    return torch.softmax(logits, dim=1).numpy()


@pytest.mark.parametrize("name, tolerance", [
    ("VGG16", 1e-4), ("EfficientNetB0", 1e-4),
    # fifty layers of random residual blocks amplify float32 rounding: PyTorch's own float32
    # probabilities differ from float64's by ~1e-4 (asserted below), so the check allows 1e-3
    ("ResNet50", 1e-3)])
def test_the_other_applications_export_with_parity(name, tolerance, tmp_path):
    x, y = colour_images(48, seed=0)
    data = tmp_path / "colours.npz"  # parity on its 48 images rather than 1,000 random ones
    np.savez(data, x_train=x, y_train=y)
    model = getattr(applications, name)(input_shape=(SIZE, SIZE, 3), classes=3, weights=None)
    stand_in_weights(model, x)
    report = export_onnx(model, tmp_path / f"{name}.onnx", dataset=f"npz:{data}",
                         tolerance=tolerance)
    assert report.top1_agree + report.ties == report.checked == 51  # 48 images + 3 edges

    torch_p = predict_proba(model, x)
    onnx_p = onnx_probabilities(tmp_path / f"{name}.onnx", x)
    assert torch_p.std(axis=0).max() > 1e-3  # not a constant that any graph would match
    assert onnx_p.argmax(1).tolist() == torch_p.argmax(1).tolist()
    # as close to the exact (float64) answer as PyTorch's own float32 is
    exact = float64_probabilities(model, x[:16])
    torch_error = np.abs(torch_p[:16] - exact).max()
    assert np.abs(onnx_p[:16] - exact).max() <= 2 * torch_error + 1e-6
