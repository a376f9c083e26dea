import csv
import math

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.train.callbacks import (Callback, CSVLogger, EarlyStopping, ModelCheckpoint,
                                    ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from cnnkit.train.tbevents import read_scalars
from cnnkit.train.trainer import TrainConfig, Trainer


class ScriptedLoss(Callback):
    """Overrides the logged val_loss with a scripted sequence, so monitors see known values."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs):
        logs["val_loss"] = self.values[epoch]


def _trainer(make_model, callbacks, **cfg):
    cfg = dict(epochs=6, batch_size=64, seed=0, verbose=0, lr=0.01) | cfg
    return Trainer(make_model(), TrainConfig(**cfg), callbacks)


def test_early_stopping_stops_and_restores_the_best_weights(make_model, digits):
    weights = []

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs):
            weights.append({k: v.clone() for k, v in self.trainer.model.net.state_dict().items()})

    es = EarlyStopping(patience=2, restore_best_weights=True)
    t = _trainer(make_model, [ScriptedLoss([1.0, 0.5, 0.7, 0.6, 0.4, 0.3]), es, Snapshot()])
    h = t.fit(*digits)
    assert len(h.history["loss"]) == 4  # best at epoch 2, no improvement in 3 and 4: stop
    assert es.best_epoch == 1 and es.stopped_epoch == 3 and "early stopping" in t.stop_reason
    for k, v in t.model.net.state_dict().items():
        assert torch.equal(v, weights[1][k])
    assert not torch.equal(weights[1]["0.weight"], weights[3]["0.weight"])


def test_early_stopping_min_delta_and_max_mode(make_model, digits):
    es = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.5)
    t = _trainer(make_model, [es], epochs=5)
    t.fit(*digits)  # accuracy never improves by 0.5 after the first epoch
    assert es.mode == "max" and len(t.history.history["loss"]) == 2


def test_monitor_without_validation_is_a_clear_error(make_model, digits):
    x, y, _, _ = digits
    with pytest.raises(CnnkitError, match="EarlyStopping monitors 'val_loss'.*validation data"):
        _trainer(make_model, [EarlyStopping()]).fit(x, y)


def test_checkpoint_save_best_only_holds_the_best_epoch(make_model, digits, tmp_path):
    path = tmp_path / "best"
    saved = {}

    class Record(Callback):
        def on_epoch_end(self, epoch, logs):
            saved[epoch] = {k: v.clone() for k, v in self.trainer.model.net.state_dict().items()}

    ck = ModelCheckpoint(path, save_best_only=True)
    t = _trainer(make_model, [ScriptedLoss([1.0, 0.5, 0.7, 0.4, 0.6, 0.8]), Record(), ck])
    t.fit(*digits)
    assert ck.best_epoch == 3 and len(t.model.saves) == 3  # epochs 1, 2 and 4 improved
    on_disk = t.model.load_weights(path)
    assert all(torch.equal(on_disk[k], saved[3][k]) for k in on_disk)


def test_checkpoint_every_epoch_with_a_name_pattern(make_model, digits, tmp_path):
    t = _trainer(make_model, [ModelCheckpoint(tmp_path / "m{epoch:02d}")], epochs=3)
    t.fit(*digits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m01", "m02", "m03"]


def test_reduce_lr_on_plateau(make_model, digits):
    rl = ReduceLROnPlateau(factor=0.5, patience=1)
    t = _trainer(make_model, [ScriptedLoss([1.0, 1.0, 1.0, 0.5, 0.6, 0.7]), rl])
    h = t.fit(*digits)
    # lr logged per epoch is the one that epoch used; plateaus after epochs 2, 3 and 5
    assert h.history["lr"] == pytest.approx([0.01, 0.01, 0.005, 0.0025, 0.0025, 0.00125])


def test_csv_logger_writes_a_row_per_epoch(make_model, digits, tmp_path):
    path = tmp_path / "history.csv"
    t = _trainer(make_model, [CSVLogger(path)], epochs=3)
    h = t.fit(*digits)
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(h.history["val_loss"])


def test_tensorboard_event_files(make_model, digits, tmp_path):
    t = _trainer(make_model, [TensorBoard(tmp_path / "tb")], epochs=3)
    h = t.fit(*digits)
    (train_file,) = (tmp_path / "tb" / "train").glob("events.out.tfevents.*")
    (val_file,) = (tmp_path / "tb" / "validation").glob("events.out.tfevents.*")
    train, val = read_scalars(train_file), read_scalars(val_file)
    assert [s for s, _ in train["epoch_loss"]] == [1, 2, 3]
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(h.history["loss"], rel=1e-6)
    assert [v for _, v in val["epoch_accuracy"]] == pytest.approx(h.history["val_accuracy"])
    assert [v for _, v in train["epoch_learning_rate"]] == pytest.approx([0.01] * 3)


def test_crc32c_known_value():
    from cnnkit.train.tbevents import crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_terminate_on_nan_keeps_the_last_good_checkpoint(make_model, digits, tmp_path):
    class Poison(Callback):  # from epoch 3 on, weights become NaN: the loss diverges
        def on_epoch_begin(self, epoch, logs):
            if epoch == 2:
                with torch.no_grad():
                    self.trainer.model.net[0].weight.fill_(math.nan)

    ck = ModelCheckpoint(tmp_path / "last")
    t = Trainer(make_model(), TrainConfig(epochs=5, batch_size=64, seed=0, verbose=0),
                [Poison(), TerminateOnNaN(), ck], state_dir=tmp_path / "state")
    h = t.fit(*digits)
    assert len(h.history["loss"]) == 2 and t.diverged and "loss became nan" in t.stop_reason
    assert "batch 1 of epoch 3" in t.stop_reason
    assert all(torch.isfinite(v).all() for v in t.model.load_weights(tmp_path / "last").values())
    assert all(torch.isfinite(v).all() for v in t.model.net.state_dict().values())
    assert Trainer.saved_config(tmp_path / "state").epochs == 5


def test_nan_without_the_callback_still_stops(make_model, digits):
    class Poison(Callback):
        def on_epoch_begin(self, epoch, logs):
            if epoch == 1:
                with torch.no_grad():
                    self.trainer.model.net[0].weight.fill_(math.inf)

    t = Trainer(make_model(), TrainConfig(epochs=4, batch_size=64, verbose=0), [Poison()])
    h = t.fit(*digits)
    assert len(h.history["loss"]) == 1 and "epoch 2" in t.stop_reason
