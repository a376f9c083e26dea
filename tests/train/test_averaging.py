"""Weight averaging (EMA): the arithmetic, the swap, and how the trainer uses it."""
import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.train.averaging import WeightAverage
from cnnkit.train.callbacks import Callback, EarlyStopping
from cnnkit.train.trainer import TrainConfig, Trainer

CFG = dict(epochs=3, batch_size=64, seed=3, verbose=0, lr=0.01, ema=0.9)


def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3))


def test_average_follows_the_formula_with_warm_up():
    net = bn_net()
    avg = WeightAverage(net, decay=0.9)
    w = net[0].weight
    start = w.detach().clone()
    expected = start.clone()
    for n, target in enumerate([1.0, -2.0, 0.5]):
        with torch.no_grad():
            w.fill_(target)
        avg.update()
        d = min(0.9, (1 + n) / (10 + n))  # 0.1, 0.1818..., 0.25
        expected = d * expected + (1 - d) * target
    avg.use_average()
    torch.testing.assert_close(net[0].weight, expected)
    avg.use_own()
    assert torch.equal(net[0].weight, torch.full_like(start, 0.5))  # the network's own, exactly


def test_batch_norm_statistics_are_averaged_and_counters_follow():
    net = bn_net().train()
    avg = WeightAverage(net, decay=0.5)
    net(torch.randn(8, 1, 8, 8) * 3 + 2)
    avg.update()
    own_mean = net[1].running_mean.clone()
    avg.use_average()
    assert not torch.equal(net[1].running_mean, own_mean)  # averaged, not copied
    assert int(net[1].num_batches_tracked) == 1  # integer buffers are never averaged


def test_fit_ends_with_averaged_weights_and_validation_scores_them(make_model, digits):
    t = Trainer(make_model(seed=1), TrainConfig(**CFG))
    h = t.fit(*digits)
    final = {k: v.clone() for k, v in t.model.net.state_dict().items()}
    # The model holds the averages; the network's own last weights are different.
    t.average.use_own()
    assert any(not torch.equal(final[k], v) for k, v in t.model.net.state_dict().items())
    t.average.use_average()
    assert t.evaluate(digits[2], digits[3])["accuracy"] == h.history["val_accuracy"][-1]
    # Averaging changes the result: the same run without it ends elsewhere.
    plain = Trainer(make_model(seed=1), TrainConfig(**CFG | {"ema": None}))
    plain.fit(*digits)
    assert any(not torch.equal(final[k], v) for k, v in plain.model.net.state_dict().items())


class Crash(Callback):
    def on_epoch_begin(self, epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt


def test_resume_with_averaging_repeats_the_uninterrupted_run(make_model, digits, tmp_path):
    cfg = TrainConfig(**CFG | {"epochs": 4})
    full = Trainer(make_model(dropout=0.3, seed=1), cfg,
                   [EarlyStopping(patience=9, restore_best_weights=True)])
    full.fit(*digits)
    first = Trainer(make_model(dropout=0.3, seed=1), cfg,
                    [EarlyStopping(patience=9, restore_best_weights=True), Crash()],
                    state_dir=tmp_path / "s")
    with pytest.raises(KeyboardInterrupt):
        first.fit(*digits)
    resumed = Trainer(make_model(dropout=0.3, seed=42), cfg,
                      [EarlyStopping(patience=9, restore_best_weights=True)],
                      state_dir=tmp_path / "s").load_state(tmp_path / "s")
    resumed.fit(*digits)
    assert resumed.history.history["val_loss"] == full.history.history["val_loss"]
    for k, v in full.model.net.state_dict().items():
        assert torch.equal(resumed.model.net.state_dict()[k], v), k


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), "0.9", True])
def test_bad_decay_is_a_one_line_error(bad):
    with pytest.raises(CnnkitError, match=r"ema=.* is out of range; valid: 0 < ema < 1") as e:
        TrainConfig(ema=bad)
    assert "\n" not in str(e.value)


def test_resume_without_averaging_is_refused(make_model, digits, tmp_path):
    Trainer(make_model(), TrainConfig(**CFG | {"epochs": 1}), state_dir=tmp_path).fit(*digits)
    with pytest.raises(CnnkitError, match=r"different configuration \(ema: 0.9 -> None\)"):
        Trainer(make_model(), TrainConfig(**CFG | {"epochs": 1, "ema": None})).load_state(tmp_path)
