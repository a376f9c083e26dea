"""bench/bench_graph.py times one residual network written three ways (Keras on TensorFlow,
a plain PyTorch module, cnnkit's graph): they must be the same network, or its ratios mean
nothing. Checked against real Keras 3 on its torch backend."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_graph  # noqa: E402
from keras_baseline import resnet_small, synthetic_images  # noqa: E402


def _keras_model():
    import keras

    return resnet_small(keras.layers, keras.Model)


def test_loop_module_is_the_keras_network():
    model = _keras_model()
    net = bench_graph.ResNetSmall()
    # Keras's count (batch-norm statistics included) and every convolution's kernel, in order
    assert model.count_params() == bench_graph.keras_count(net) == 698_858
    keras_kernels = [tuple(w.shape) for w in model.weights
                     if "conv2d" in w.path and "kernel" in w.path]
    torch_kernels = [tuple(m.weight.permute(2, 3, 1, 0).shape) for m in net.modules()
                     if isinstance(m, torch.nn.Conv2d)]
    assert sorted(keras_kernels) == sorted(torch_kernels) and len(torch_kernels) == 15
    x, _ = synthetic_images(2, seed=0)
    assert tuple(model(x.astype("float32") / 255).shape) == (2, 10)
    assert net(torch.from_numpy(x).permute(0, 3, 1, 2).float()).shape == (2, 10)


def test_synthetic_images_are_the_same_in_both_processes():
    (x1, y1), (x2, y2) = synthetic_images(3, seed=0), synthetic_images(3, seed=0)
    assert x1.shape == (3, 64, 64, 3) and x1.dtype.name == "uint8"
    assert (x1 == x2).all() and (y1 == y2).all() and 0 <= y1.min() and y1.max() < 10


def test_cnnkit_graphs_are_the_keras_network():
    import cnnkit
    from cnnkit import keras as ck
    from cnnkit import layers

    model = _keras_model()
    x, _ = synthetic_images(2, seed=0)
    for graph in (resnet_small(layers, cnnkit.Model), resnet_small(ck.layers, ck.Model)):
        assert bench_graph.keras_count(graph.net) == model.count_params() == 698_858
        # Keras's summary shapes, layer by layer (the Add, the shortcuts, the strides)
        assert [tuple(i.output_shape) for i in graph.layer_infos()] == \
            [tuple(layer.output.shape[1:]) for layer in model.layers]
        assert graph.predict(x).shape == (2, 10)
