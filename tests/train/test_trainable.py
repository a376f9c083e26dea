"""`layer.trainable = False` on cnnkit's own layers, honoured by the core engine (Trainer,
`model.fit`; `cnnkit.run` trains through the same Trainer): a frozen layer's weights come out of training bit for bit as they
went in, weight decay included, while the other layers learn; unfreezing trains it again."""
from __future__ import annotations

import torch

import cnnkit
from cnnkit import Sequential
from cnnkit import layers as L


def _model():
    torch.manual_seed(0)
    return Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", name="conv"),
                       L.BatchNormalization(name="bn"), L.Flatten(),
                       L.Dense(10, activation="softmax", name="head")])


def _weights(model, name):
    return {k: v.detach().clone() for k, v in model.layer_module(name).state_dict().items()
            if v.is_floating_point() and "running" not in k}


def _digits(n=300):
    ds = cnnkit.data.load_dataset("digits")
    return ds.x_train[:n], ds.y_train[:n]


def test_frozen_layers_keep_their_weights_under_weight_decay():
    model = _model()
    model.get_layer("conv").trainable = False
    model.get_layer("bn").trainable = False
    before = {name: _weights(model, name) for name in ("conv", "bn", "head")}
    x, y = _digits()
    # AdamW's decoupled decay would shrink every weight it holds, gradient or not
    model.fit(x, y, epochs=2, batch_size=64, optimizer="adamw", weight_decay=0.1, verbose=0,
              seed=1)
    for name in ("conv", "bn"):
        for key, value in _weights(model, name).items():
            assert torch.equal(value, before[name][key]), f"{name}.{key} moved"
    assert not torch.equal(_weights(model, "head")["linear.weight"],
                           before["head"]["linear.weight"])  # the head learnt


def test_unfreezing_trains_the_layer_again():
    model = _model()
    layer = model.get_layer("conv")
    layer.trainable = False
    x, y = _digits(200)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=1)
    frozen = _weights(model, "conv")
    layer.trainable = True
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=1)
    assert not torch.equal(_weights(model, "conv")["conv.weight"], frozen["conv.weight"])


def _stats(model, name):
    return {k: v.clone() for k, v in model.layer_module(name).state_dict().items()
            if "running" in k}


def test_a_frozen_batch_norm_keeps_its_moving_statistics():
    """Keras runs a non-trainable BatchNormalization in inference mode: its moving mean and
    variance stay as they were (and the batch is normalized with them), while a trainable one
    in the same model keeps learning its statistics."""
    torch.manual_seed(0)
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, name="conv"),
                        L.BatchNormalization(name="bn"), L.Activation("relu"),
                        L.Conv2D(4, 3, name="conv2"), L.BatchNormalization(name="bn2"),
                        L.Flatten(), L.Dense(10, activation="softmax", name="head")])
    model.get_layer("conv").trainable = False
    model.get_layer("bn").trainable = False
    frozen, trained = _stats(model, "bn"), _stats(model, "bn2")
    x, y = _digits(200)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=1)
    for key, value in _stats(model, "bn").items():
        assert torch.equal(value, frozen[key]), f"frozen bn.{key} moved"
    learnt = _stats(model, "bn2")
    assert any(not torch.equal(v, trained[k]) for k, v in learnt.items() if "mean" in k)


def test_freeze_keeps_the_features_batch_norm_statistics(tmp_path):
    """`--init-from RUN --freeze` (seed 001's transfer): the kept convolutional part's batch
    norm statistics are the source model's, after training the new head."""
    source = cnnkit.run(cnnkit.RunSpec(model="fast-cnn", dataset="digits", epochs=1, seed=0,
                                       verbose=0, out=str(tmp_path / "src")))
    run = cnnkit.run(cnnkit.RunSpec(model="fast-cnn", dataset="digits", epochs=1, seed=1,
                                    verbose=0, init_from=str(source.run_dir / "best"),
                                    freeze=True, out=str(tmp_path / "dst")))
    before, after = cnnkit.load(source.run_dir / "best"), cnnkit.load(run.run_dir / "best")
    bn = before.layer_names().index("batch_normalization")
    name = before.layer_names()[bn]
    for key, value in before.layer_module(name).state_dict().items():
        assert torch.equal(after.layer_module(name).state_dict()[key], value), key
