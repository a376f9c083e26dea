"""Graph models and real Keras 3 (torch backend): a functional `.keras` file written by Keras
loads into cnnkit with Keras's predictions, a cnnkit graph saved as `.keras` loads in Keras with
cnnkit's, and `cnnkit.keras.Model(inputs, outputs)` with a skip connection compiles, fits,
evaluates, predicts, saves and loads."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

import cnnkit
from _graph_helpers import Add, residual_model
from cnnkit.errors import CnnkitError
from cnnkit.model.presets import resnet_mini

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)


def keras_residual(num_classes=5):
    """A ResNet-style graph in real Keras: stem, a block with an identity skip, a strided
    block with a projection skip (1x1 conv, batch norm), pooling, a softmax head."""
    import keras
    from keras import layers

    def block(x, filters, strides=1):
        y = layers.Conv2D(filters, 3, strides, padding="same", use_bias=False)(x)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(y))
        if strides != 1 or x.shape[-1] != filters:
            x = layers.BatchNormalization()(layers.Conv2D(filters, 1, strides)(x))
        return layers.Activation("relu")(layers.Add()([x, y]))

    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = block(block(x, 8), 16, strides=2)
    outputs = layers.Dense(num_classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    # weights and batch norm statistics all different, so a weight in the wrong layer shows
    model.set_weights([RNG.uniform(0.5, 1.5, w.shape) if "variance" in w.path
                       else RNG.normal(0, 0.3, w.shape) for w in model.weights])
    return model


def randomized(model):
    """`model` (cnnkit) with every weight and batch norm statistic drawn at random."""
    with torch.no_grad():
        for key, value in model.net.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in key
                            else torch.randn_like(value) * 0.3)
    model.net.eval()
    return model


def keras2_nodes(path):
    """Rewrite a legacy .h5 file's inbound nodes as Keras 2 (tf.keras) wrote them:
    [[[layer name, node index, tensor index, kwargs], ...]]."""
    import json

    import h5py

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            layer["inbound_nodes"] = [[[t["config"]["keras_history"][0], 0, 0, {}]
                                       for t in _tensors(node["args"])]
                                      for node in layer["inbound_nodes"]]
        f.attrs["model_config"] = json.dumps(config)


def _tensors(args):
    for a in args:
        yield from (_tensors(a) if isinstance(a, list) else [a])


@pytest.mark.parametrize("kind", [".keras", ".h5", "Keras 2's .h5"])
def test_a_functional_keras_file_loads_into_a_cnnkit_graph_with_keras_predictions(kind, tmp_path):
    theirs = keras_residual()
    path = tmp_path / ("resnet.keras" if kind == ".keras" else "resnet.h5")
    theirs.save(path)
    if kind == "Keras 2's .h5":
        keras2_nodes(path)

    model = cnnkit.load(path)
    assert type(model).__name__ == "Functional"
    assert [layer.name for layer in theirs.layers] == model.layer_names()
    adds = [i for i, layer in enumerate(model.layers) if layer.type == "Add"]
    assert len(adds) == 2 and all(len(model.inbound[i]) == 2 for i in adds)
    expected = theirs.predict(PIXELS / 255.0, verbose=0)  # cnnkit feeds a Keras file x / 255
    assert np.allclose(model.predict(PIXELS), expected, atol=1e-5)


@pytest.mark.parametrize("build", [lambda: resnet_mini((12, 12, 3), 4),
                                   lambda: residual_model((12, 12, 3), 4)],
                         ids=["resnet-mini", "residual"])
def test_a_cnnkit_graph_saved_as_keras_loads_in_keras_with_cnnkit_predictions(build, tmp_path):
    import keras

    model = randomized(build())
    model.save(tmp_path / "graph.keras")
    theirs = keras.models.load_model(tmp_path / "graph.keras")
    ours = model.predict(PIXELS)
    assert np.allclose(theirs.predict(PIXELS / 255.0, verbose=0), ours, atol=1e-5)
    assert [layer.name for layer in theirs.layers] == sorted(
        model.layer_names(), key=[layer.name for layer in theirs.layers].index)
    again = cnnkit.load(tmp_path / "graph.keras")  # and back, through Keras's layer order
    assert np.allclose(again.predict(PIXELS), ours, atol=1e-6)


def test_a_graph_is_refused_as_a_legacy_h5_file_in_one_line(tmp_path):
    with pytest.raises(CnnkitError, match="is a graph: save it to a .keras file"):
        residual_model().save(tmp_path / "graph.h5")
    assert not (tmp_path / "graph.h5").exists()


def test_cnnkit_keras_functional_model_with_a_skip_compiles_fits_evaluates_saves(tmp_path):
    import keras as real_keras
    from sklearn.datasets import load_digits

    from cnnkit import keras

    layers = keras.layers
    merge = getattr(layers, "Add", Add)  # cnnkit.keras's own once the merge layers land
    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")
    y = digits.target

    inputs = keras.Input((8, 8, 1))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    r = layers.Conv2D(8, 3, padding="same")(layers.Conv2D(8, 3, padding="same",
                                                          activation="relu")(h))
    h = layers.Activation("relu")(merge()([h, r]))
    outputs = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:1500], y[:1500], epochs=4, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x[1500:], y[1500:], verbose=0)
    assert accuracy > 0.5
    probs = model.predict(x[1500:], verbose=0)
    assert probs.shape == (297, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y[1500:]).mean() == pytest.approx(accuracy)

    model.save(tmp_path / "m.keras")
    theirs = real_keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(theirs.predict(x[1500:], verbose=0), probs, atol=1e-5)
    again = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(again.predict(x[1500:], verbose=0), probs, atol=1e-5)


def test_a_functional_file_naming_a_layer_that_does_not_come_first_is_one_line(tmp_path):
    import json
    import zipfile

    keras_residual().save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as z:
        files = {name: z.read(name) for name in z.namelist()}
    config = json.loads(files["config.json"])
    add = next(e for e in config["config"]["layers"] if e["class_name"] == "Add")
    head = config["config"]["layers"][-1]["name"]  # Keras numbers names over a session
    add["inbound_nodes"][0]["args"][0][1]["config"]["keras_history"][0] = head  # a cycle
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(tmp_path / "bad.keras")
    assert str(e.value).endswith(f"layer {add['name']!r} is called on {head!r}, which no layer "
                                 "listed before it outputs") and "\n" not in str(e.value)
