"""bench/bench_pretrained.py times MobileNetV2 and ResNet50 with a new head written three ways
(Keras on TensorFlow, plain PyTorch modules, cnnkit.keras.applications): they must be the same
network, or its ratios mean nothing. Checked against real Keras 3 on its torch backend."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_graph import keras_count  # noqa: E402
from bench_pretrained import CLASSES, cnnkit_model  # noqa: E402
from torch_applications import Classifier  # noqa: E402

SIZE = 64  # any size shares the weights; small keeps the test fast


def keras_classifier(keras, name):
    """keras_applications.py's network: the backbone, pooling and a new Dense head."""
    builder = {"mobilenetv2": keras.applications.MobileNetV2,
               "resnet50": keras.applications.ResNet50}[name]
    base = builder(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(features)), base


@pytest.mark.parametrize("name, params", [("mobilenetv2", 2_270_794), ("resnet50", 23_608_202)])
def test_the_three_networks_are_keras_s(keras, name, params):
    theirs, base = keras_classifier(keras, name)
    loop = Classifier(name)
    ours, _ = cnnkit_model(name, SIZE)
    # Keras's count (batch-norm statistics included) on every side
    assert theirs.count_params() == keras_count(loop) == ours.count_params() == params
    convs = lambda net: sorted(tuple(m.weight.shape) for m in net.modules()  # noqa: E731
                               if isinstance(m, torch.nn.Conv2d))
    assert convs(loop) == convs(ours.net)  # every convolution's kernel, depthwise ones included
    with torch.no_grad():  # the backbone's output shape: strides and paddings agree
        out = loop.backbone(torch.zeros(1, 3, SIZE, SIZE))
    h, w, c = base.output.shape[1:]
    assert tuple(out.shape[1:]) == (c, h, w)
