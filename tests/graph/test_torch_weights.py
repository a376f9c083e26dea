"""PyTorch weights in the applications (issue 28, item 1): torchvision's vgg16, mobilenet_v2 and
efficientnet_b0 and timm's tf_efficientnet_b0 / efficientnet_b0 state dicts, from .pth (read
with weights_only) or .safetensors, load by their own names into cnnkit's networks, built to
follow each file's padding, batch norm and preprocessing, and predict what the PyTorch network
predicts. torchvision and timm are not installed (they need another torch): the reference
networks below are plain torch, written from those libraries' sources (module names, padding,
epsilon), randomly initialised with batch norm statistics from a random batch."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import cnnkit
import cnnkit.keras.applications as kapps
import cnnkit.model.applications as apps
from cnnkit.errors import CnnkitError
from cnnkit.model.applications import load_weights

SIZE = 64  # pixels: small enough to be fast, large enough for every stride-2 window


# -- reference networks, as torchvision and timm name and run them ------------------------------
def conv_bn(cin, cout, k, stride=1, groups=1, act=nn.ReLU6, eps=1e-5):
    """torchvision's Conv2dNormActivation: conv (padding (k-1)//2 on every side), BN, act."""
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=eps)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class TorchVGG16(nn.Module):
    """torchvision's vgg16: features.N, avgpool, classifier.0/3/6. Its AdaptiveAvgPool2d((7, 7))
    is the identity on 224-pixel images; `pooled` is that size at the test's resolution."""

    def __init__(self, classes, pooled):
        super().__init__()
        layers, cin = [], 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Linear(512 * pooled * pooled, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class Residual(nn.Module):
    """A block whose layers are one nn.Sequential under `attr` (torchvision's `conv` or
    `block`), the input added where the shape allows."""

    def __init__(self, attr, layers, skip):
        super().__init__()
        setattr(self, attr, nn.Sequential(*layers))
        self.attr, self.skip = attr, skip

    def forward(self, x):
        y = getattr(self, self.attr)(x)
        return x + y if self.skip else y


def inverted_residual(cin, cout, stride, t):  # torchvision's InvertedResidual: conv.K
    hidden = cin * t
    layers = [] if t == 1 else [conv_bn(cin, hidden, 1)]
    layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
               nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return Residual("conv", layers, stride == 1 and cin == cout)


class TorchMobileNetV2(nn.Module):
    """torchvision's mobilenet_v2: features.0..18, classifier.1."""

    def __init__(self, classes):
        super().__init__()
        feats, cin = [conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                feats.append(inverted_residual(cin, c, s if i == 0 else 1, t))
                cin = c
        feats.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


# (expansion, kernel, stride, in, out, repeats) of EfficientNet-B0's seven stages
B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


def b0_blocks():
    """(expansion, kernel, stride, in, out) per block, stage by stage."""
    for e, k, s, cin, cout, n in B0:
        yield [(e, k, s if i == 0 else 1, cin if i == 0 else cout, cout) for i in range(n)]


class SqueezeExcitation(nn.Module):  # torchvision's: fc1, fc2
    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


def mbconv(e, k, s, cin, cout):  # torchvision's MBConv: block.K
    hidden = cin * e
    layers = [] if e == 1 else [conv_bn(cin, hidden, 1, act=nn.SiLU)]
    layers += [conv_bn(hidden, hidden, k, s, groups=hidden, act=nn.SiLU),
               SqueezeExcitation(hidden, max(1, cin // 4)), conv_bn(hidden, cout, 1, act=None)]
    return Residual("block", layers, s == 1 and cin == cout)


class TorchvisionEfficientNetB0(nn.Module):
    """torchvision's efficientnet_b0: features.0 (stem), features.1..7 (stages), features.8."""

    def __init__(self, classes):
        super().__init__()
        stages = [nn.Sequential(*(mbconv(*b) for b in stage)) for stage in b0_blocks()]
        self.features = nn.Sequential(conv_bn(3, 32, 3, 2, act=nn.SiLU), *stages,
                                      conv_bn(320, 1280, 1, act=nn.SiLU))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class TimmConv(nn.Conv2d):
    """timm's create_conv2d: 'same' (tf_ models) pads as TensorFlow, dynamically where the
    stride is 2; otherwise ((stride - 1) + (k - 1)) // 2 on every side."""

    def __init__(self, cin, cout, k, stride=1, groups=1, tf=False):
        self.dynamic = tf and stride > 1
        super().__init__(cin, cout, k, stride, 0 if self.dynamic else ((stride - 1) + (k - 1)) // 2,
                         groups=groups, bias=False)

    def forward(self, x):
        if self.dynamic:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):  # F.pad: the last dimension first
                s, k = self.stride[0], self.kernel_size[0]
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


class BatchNormAct(nn.BatchNorm2d):  # timm's BatchNormAct2d: a BatchNorm2d's names
    def __init__(self, c, eps, act=True):
        super().__init__(c, eps=eps)
        self.act = act

    def forward(self, x):
        y = super().forward(x)
        return F.silu(y) if self.act else y


class SqueezeExcite(nn.Module):  # timm's: conv_reduce, conv_expand
    def __init__(self, c, rd):
        super().__init__()
        self.conv_reduce, self.conv_expand = nn.Conv2d(c, rd, 1), nn.Conv2d(rd, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3),
                                                                                   keepdim=True)))))


class TimmBlock(nn.Module):
    """timm's DepthwiseSeparableConv (expansion 1) or InvertedResidual, by their names."""

    def __init__(self, e, k, s, cin, cout, tf, eps):
        super().__init__()
        mid = cin * e
        if e == 1:
            self.order = ("conv_dw", "bn1", "se", "conv_pw", "bn2")
            self.conv_dw, self.bn1 = TimmConv(cin, cin, k, s, cin, tf), BatchNormAct(cin, eps)
            self.conv_pw, self.bn2 = TimmConv(cin, cout, 1, tf=tf), BatchNormAct(cout, eps, False)
        else:
            self.order = ("conv_pw", "bn1", "conv_dw", "bn2", "se", "conv_pwl", "bn3")
            self.conv_pw, self.bn1 = TimmConv(cin, mid, 1, tf=tf), BatchNormAct(mid, eps)
            self.conv_dw, self.bn2 = TimmConv(mid, mid, k, s, mid, tf), BatchNormAct(mid, eps)
            self.conv_pwl, self.bn3 = TimmConv(mid, cout, 1, tf=tf), BatchNormAct(cout, eps, False)
        self.se = SqueezeExcite(mid, cin // 4)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        y = x
        for name in self.order:
            y = getattr(self, name)(y)
        return x + y if self.skip else y


class TimmEfficientNetB0(nn.Module):
    """timm's (tf_)efficientnet_b0: conv_stem, bn1, blocks.i.j, conv_head, bn2, classifier."""

    def __init__(self, classes, tf):
        super().__init__()
        eps = 1e-3 if tf else 1e-5
        self.conv_stem, self.bn1 = TimmConv(3, 32, 3, 2, tf=tf), BatchNormAct(32, eps)
        self.blocks = nn.Sequential(*(nn.Sequential(*(TimmBlock(*b, tf, eps) for b in stage))
                                      for stage in b0_blocks()))
        self.conv_head, self.bn2 = TimmConv(320, 1280, 1, tf=tf), BatchNormAct(1280, eps)
        self.classifier = nn.Linear(1280, classes)

    def features(self, x):
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def randomised(net):
    """Random weights (He's normal for convolutions and dense layers, gammas and betas drawn
    too); batch norm statistics from a random batch, each then moved at random, so that
    activations keep a scale near 1 through the depth and every statistic matters."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0, 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.momentum = 1.0  # the running statistics become the batch's
        net.train()
        net(torch.randn(8, 3, SIZE, SIZE))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
                m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn_like(m.running_mean))
                m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
    return net.eval()


REFERENCES = {  # builder, reference network, the file's name
    "vgg16": ("VGG16", lambda: TorchVGG16(10, SIZE // 32), "vgg16.pth"),
    "mobilenet_v2": ("MobileNetV2", lambda: TorchMobileNetV2(10), "mobilenet_v2.safetensors"),
    "efficientnet_b0": ("EfficientNetB0", lambda: TorchvisionEfficientNetB0(10),
                        "efficientnet_b0.pth"),
    "tf_efficientnet_b0": ("EfficientNetB0", lambda: TimmEfficientNetB0(10, tf=True),
                           "tf_efficientnet_b0.safetensors"),
    "timm_efficientnet_b0": ("EfficientNetB0", lambda: TimmEfficientNetB0(10, tf=False),
                             "efficientnet_b0_timm.pth"),
}


SOURCE_NAMES = {"vgg16": "torchvision's vgg16", "mobilenet_v2": "torchvision's mobilenet_v2",
                "efficientnet_b0": "torchvision's efficientnet_b0",
                "tf_efficientnet_b0": "timm's tf_efficientnet_b0",
                "timm_efficientnet_b0": "timm's efficientnet_b0"}


def save_state(state, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


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
