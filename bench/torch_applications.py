"""keras.applications' MobileNetV2 and ResNet50 backbones (include_top=False) written the way a
PyTorch user writes them (torchvision's style: nn.Conv2d with symmetric padding, nn.BatchNorm2d,
block classes), plus a new head: bench_pretrained.py's plain-loop network. Keras's architecture,
not torchvision's, where the two differ (ResNet50 strides in its first 1x1 convolution and its
convolutions have biases; MobileNetV2's batch norms use eps 1e-3), so the three sides run the
same network: tests/test_bench_pretrained.py checks the counts against real Keras."""
from __future__ import annotations

from torch import nn

# MobileNetV2's blocks 0..16: (output filters, stride, expansion), as Keras builds them
MOBILENET_BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
                    (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6),
                    (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))
RESNET_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, stride)


def conv_bn(cin, cout, kernel, stride=1, groups=1, act=True, eps=1e-3):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=eps)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        expand = [conv_bn(cin, hidden, 1)] if expansion != 1 else []
        self.body = nn.Sequential(*expand, conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2() -> nn.Sequential:
    """(B, 3, H, W) -> (B, 1280, H/32, W/32), alpha 1.0."""
    layers, cin = [conv_bn(3, 32, 3, 2)], 32
    for cout, stride, expansion in MOBILENET_BLOCKS:
        layers.append(InvertedResidual(cin, cout, stride, expansion))
        cin = cout
    return nn.Sequential(*layers, conv_bn(cin, 1280, 1))


class Bottleneck(nn.Module):
    """Keras's ResNet50 block (v1): 1x1 (stride here) -> 3x3 -> 1x1, each with a bias and a
    batch norm (eps 1.001e-5), a projection shortcut in each stage's first block."""

    def __init__(self, cin, filters, stride, project):
        super().__init__()

        def cb(a, b, k, s=1):
            return [nn.Conv2d(a, b, k, s, k // 2), nn.BatchNorm2d(b, eps=1.001e-5)]
        self.body = nn.Sequential(*cb(cin, filters, 1, stride), nn.ReLU(),
                                  *cb(filters, filters, 3), nn.ReLU(), *cb(filters, 4 * filters, 1))
        self.shortcut = nn.Sequential(*cb(cin, 4 * filters, 1, stride)) if project else nn.Identity()

    def forward(self, x):
        return (self.body(x) + self.shortcut(x)).relu()


def resnet50() -> nn.Sequential:
    """(B, 3, H, W) -> (B, 2048, H/32, W/32)."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64, eps=1.001e-5), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for filters, blocks, stride in RESNET_STAGES:
        for i in range(blocks):
            layers.append(Bottleneck(cin, filters, stride if i == 0 else 1, i == 0))
            cin = 4 * filters
    return nn.Sequential(*layers)


BACKBONES = {"mobilenetv2": (mobilenet_v2, 1280), "resnet50": (resnet50, 2048)}


class Classifier(nn.Module):
    """A backbone and a new head: global average pooling and a Dense layer (logits)."""

    def __init__(self, name: str, classes: int = 10):
        super().__init__()
        build, width = BACKBONES[name]
        self.backbone, self.head = build(), nn.Linear(width, classes)

    def forward(self, x):  # (B, 3, H, W) -> (B, classes)
        return self.head(self.backbone(x).mean((2, 3)))
