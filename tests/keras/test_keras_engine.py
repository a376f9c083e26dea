"""cnnkit.keras's fit is a way into cnnkit's one training loop (issue 26): the same callback
classes, cnnkit's own callbacks working in a Keras fit, and cnnkit's resumable state behind
Keras's BackupAndRestore."""
from __future__ import annotations

import csv

import numpy as np
import pytest

import cnnkit.train.callbacks as core
from cnnkit.errors import CnnkitError
from cnnkit.keras import callbacks, layers, models
from cnnkit.keras.utils import set_random_seed

RNG = np.random.default_rng(1)
X = RNG.random((48, 8, 8, 1)).astype("float32")
Y = np.arange(48) % 3


def small(optimizer="adam"):
    set_random_seed(0)
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
                               layers.Flatten(), layers.Dropout(0.3),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("name", ["Callback", "History", "EarlyStopping", "ModelCheckpoint",
                                  "ReduceLROnPlateau", "LambdaCallback", "TerminateOnNaN",
                                  "TensorBoard", "BackupAndRestore", "MonitorCallback"])
def test_keras_callbacks_are_the_core_classes(name):
    assert getattr(callbacks, name) is getattr(core, name)


def test_a_core_callback_works_in_a_keras_fit(tmp_path):
    """cnnkit's CSVLogger and a callback with cnnkit's `on_batch_end` hook in Keras's fit
    (before: 'callbacks take cnnkit.keras.callbacks objects')."""
    sizes = []

    class Batches(core.Callback):
        def on_batch_end(self, batch, logs=None):
            sizes.append(logs["size"])

    history = small().fit(X, Y, epochs=2, batch_size=16, verbose=0, validation_split=0.25,
                          callbacks=[core.CSVLogger(tmp_path / "h.csv"), Batches()])
    assert isinstance(history, core.History) and sizes == [16, 16, 4] * 2
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # cnnkit's numbering; Keras's own: 0, 1
    assert [float(r["val_loss"]) for r in rows] == history.history["val_loss"]
    logger, model = callbacks.CSVLogger(tmp_path / "k.csv"), small()
    for epochs in (2, 1):  # Keras: each fit writes its own file (append=False)
        model.fit(X, Y, epochs=epochs, batch_size=16, verbose=0, callbacks=[logger])
    rows = list(csv.DictReader(open(tmp_path / "k.csv")))
    assert [r["epoch"] for r in rows] == ["0"]  # Keras's numbering
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0,
              callbacks=[callbacks.CSVLogger(tmp_path / "k.csv", append=True)])
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "k.csv"))] == ["0", "0"]


def test_validation_freq_and_steps_per_epoch_with_arrays():
    batches = []
    history = small().fit(X, Y, epochs=4, batch_size=16, verbose=0, validation_data=(X, Y),
                          validation_freq=2, steps_per_epoch=2, callbacks=[
                              callbacks.LambdaCallback(on_train_batch_end=lambda b, logs:
                                                       batches.append(b))])
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    assert batches == [0, 1] * 4


def test_backup_and_restore_resumes_an_interrupted_fit_to_the_same_weights(tmp_path):
    # RMSprop: its whole state is in its state_dict (Keras's Adam keeps its step count beside it)
    whole = small("rmsprop")
    whole.fit(X, Y, epochs=4, batch_size=16, verbose=0)

    class Crash(core.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    backup = tmp_path / "backup"
    part = small("rmsprop")
    with pytest.raises(KeyboardInterrupt):
        part.fit(X, Y, epochs=4, batch_size=16, verbose=0,
                 callbacks=[callbacks.BackupAndRestore(backup), Crash()])
    assert (backup / "state.json").is_file()
    epochs = []
    part = small("rmsprop")  # a fresh process would rebuild the model the same way
    part.fit(X, Y, epochs=4, batch_size=16, verbose=0, callbacks=[
        callbacks.BackupAndRestore(backup),
        callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(epoch))])
    assert epochs == [2, 3] and not backup.exists()
    for a, b in zip(part.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mixed_bfloat16_policy_trains_under_bf16_autocast():
    from cnnkit.keras import mixed_precision
    from cnnkit.train.device import cpu_has_bf16

    seen = []
    probe = callbacks.LambdaCallback(on_train_begin=lambda logs: seen.append(probe.trainer.precision))
    plain = small()
    plain.fit(X, Y, epochs=1, batch_size=16, verbose=0, shuffle=False, callbacks=[probe])
    mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = small()
        mixed.fit(X, Y, epochs=1, batch_size=16, verbose=0, shuffle=False, callbacks=[probe])
    finally:
        mixed_precision.set_global_policy("float32")
    assert seen == ["fp32", "bf16"] and mixed_precision.global_policy() == "float32"
    if cpu_has_bf16():  # bf16 arithmetic: the same start, other weights than float32's
        assert not np.allclose(plain.get_weights()[0], mixed.get_weights()[0], atol=1e-6)
    with pytest.raises(CnnkitError, match="unknown mixed precision policy 'bf16'; valid: float32"):
        mixed_precision.set_global_policy("bf16")


def test_mixed_bfloat16_policy_predicts_in_bf16_too():
    """As Keras's layers compute in the policy's dtype in predict as in fit; the arrays that
    come back are float32, within bf16's rounding of float32's."""
    from cnnkit.keras import mixed_precision

    model = small()
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    plain = model.predict(X, verbose=0)
    mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = model.predict(X, verbose=0)
    finally:
        mixed_precision.set_global_policy("float32")
    assert mixed.dtype == np.float32 and mixed.shape == plain.shape
    np.testing.assert_allclose(mixed, plain, atol=2e-2)
    assert not np.allclose(mixed, plain, atol=1e-6)  # bf16 arithmetic ran
    np.testing.assert_array_equal(model.predict(X, verbose=0), plain)  # float32 again


def test_tensorboard_in_a_keras_fit_names_the_compiled_loss_and_optimizer(tmp_path):
    """cnnkit's TensorBoard (Keras's layout) in a Keras fit: curves, the learning rate, and
    the HPARAMS tab with compile()'s own names (mean_squared_error has no cnnkit config name)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from cnnkit.keras import optimizers
    from cnnkit.keras.utils import to_categorical

    model = small()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mean_squared_error")
    model.fit(X, to_categorical(Y), epochs=2, batch_size=16, verbose=0, validation_split=0.25,
              callbacks=[callbacks.TensorBoard(tmp_path / "tb")])
    train = EventAccumulator(str(tmp_path / "tb" / "train"))
    train.Reload()
    assert set(train.Tags()["scalars"]) == {"epoch_loss", "epoch_learning_rate"}
    assert [s.value for s in train.Scalars("epoch_learning_rate")] == pytest.approx([0.05] * 2)
    hp_events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    hp_events.Reload()
    start = metadata.parse_session_start_info_plugin_data(
        hp_events.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG])
    hp = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert hp["optimizer"] == "sgd" and hp["loss"] == "mean_squared_error"
    assert hp["lr"] == pytest.approx(0.05) and hp["precision"] == "fp32"
