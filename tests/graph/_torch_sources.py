"""Plain-torch copies of the PyTorch networks whose weights cnnkit's applications load
(tests/graph/test_torch_weights.py): torchvision's vgg16, mobilenet_v2 and efficientnet_b0 and
timm's (tf_)efficientnet_b0, written from those libraries' sources (module names, padding,
epsilon) with their exact state_dict names, since torchvision and timm cannot be installed
beside this torch; randomly initialised with batch norm statistics from a random batch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

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


def save_state(state, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path
