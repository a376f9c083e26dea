"""Batch-norm statistics are right at the end of a short run: the `fast` recipe's moving
averages have seen 12-15 steps, and without precise BN its model evaluated at chance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cnnkit.cli import main
from cnnkit.train.callbacks import Callback
from cnnkit.train.precise_bn import SETTLED, sample, unsettled
from cnnkit.train.trainer import TrainConfig, Trainer


def _scores(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["final_accuracy"], metrics["test_accuracy"]


def test_fast_recipe_on_digits_for_one_epoch_scores_near_its_training_accuracy(tmp_path, capsys):
    out = tmp_path / "fast"
    assert main(["train", "--recipe", "fast", "--dataset", "digits", "--epochs", "1",
                 "--seed", "1", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Batch-norm statistics recomputed over 1,437 training images: the moving averages " \
           "had seen 12 steps" in said
    train, test = _scores(out)
    assert train > 0.5 and test > train - 0.1, (train, test)  # was 0.61 / 0.10


def _digit_folder(root, per_class: int = 80):
    """800 PNGs, 28x28, of sklearn's digits upscaled: root/<digit>/NNN.png."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for k in range(10):
        (root / str(k)).mkdir(parents=True)
        for i, j in enumerate(np.flatnonzero(d.target == k)[:per_class]):
            img = Image.fromarray((d.images[j] * 16).clip(0, 255).astype(np.uint8))
            img.resize((28, 28), Image.BILINEAR).save(root / str(k) / f"{i:03d}.png")
    return root


def test_fast_recipe_on_an_800_image_folder_for_three_epochs_scores_near_training(tmp_path):
    folder = _digit_folder(tmp_path / "digits")
    out = tmp_path / "run"
    assert main(["train", "--recipe", "fast", "--dataset", f"folder:{folder}", "--seed", "1",
                 "--quiet", "--out", str(out)]) == 0
    train, test = _scores(out)
    assert train > 0.8 and test > train - 0.1, (train, test)  # was 0.92 / 0.48


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8, momentum=0.01), nn.ReLU(),
                         nn.Dropout(0.5), nn.Flatten(), nn.Linear(288, 10))


def _bn_model(make_model):
    model = make_model()
    model.net = _bn_net()
    model.net.output_activation = "softmax"
    return model


def test_statistics_are_the_training_images_own_and_the_run_repeats(make_model, digits):
    cfg = TrainConfig(epochs=1, batch_size=64, seed=5, verbose=0, lr=0.01)
    runs = []
    for _ in range(2):
        trainer = Trainer(_bn_model(make_model), cfg)
        trainer.fit(digits[0], digits[1])
        runs.append(trainer)
    a, b = (t.model.net.state_dict() for t in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same seed, the same statistics
    assert runs[0].precise_bn == {"images": 600, "steps": 10}
    bn = runs[0].model.net[1]
    assert int(bn.num_batches_tracked) == 10  # training steps only
    # the averages of per-batch statistics of the first conv's output over the training set
    net = runs[0].model.net
    with torch.no_grad():
        feats = net[0](runs[0]._input(digits[0]))  # (N, 8, 6, 6)
    mean = feats.mean(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    var = feats.var(dim=(0, 2, 3))
    assert torch.allclose(bn.running_var, var, rtol=0.15)  # per-batch: a little less


def test_only_unsettled_averages_are_recomputed_and_frozen_ones_never():
    net = _bn_net()
    keras_default = 459  # 0.99 ** 459 < 0.01 <= 0.99 ** 458
    assert (1 - 0.01) ** keras_default < SETTLED <= (1 - 0.01) ** (keras_default - 1)
    assert unsettled(net, [], keras_default - 1) == [net[1]]
    assert unsettled(net, [], keras_default) == []
    assert unsettled(net, [net[1]], 1) == []


def test_the_sample_is_fixed_by_the_seed_and_shared_out_between_ranks():
    one = sample(10_000, 128, seed=3)
    assert sum(len(b) for b in one) == 4096 and len(set(torch.cat(one).tolist())) == 4096
    assert all(torch.equal(x, y) for x, y in zip(one, sample(10_000, 128, seed=3)))
    ranks = [sample(10_000, 128, 3, part=(r, 2)) for r in range(2)]
    assert sorted(torch.cat(ranks[0] + ranks[1]).tolist()) == sorted(torch.cat(one).tolist())
    assert [len(b) for b in sample(5, 4, seed=0)] == [4]  # a last batch of one is left out


class _Crash(Callback):
    def on_epoch_begin(self, epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt


def test_a_resumed_run_ends_with_the_uninterrupted_runs_statistics(make_model, digits, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, seed=5, verbose=0, lr=0.01)
    full = Trainer(_bn_model(make_model), cfg)
    full.fit(*digits)
    first = Trainer(_bn_model(make_model), cfg, [_Crash()], state_dir=tmp_path / "s")
    with pytest.raises(KeyboardInterrupt):
        first.fit(*digits)
    resumed = Trainer(_bn_model(make_model), cfg, state_dir=tmp_path / "s")
    resumed.load_state(tmp_path / "s").fit(*digits)
    a, b = full.model.net.state_dict(), resumed.model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # validation saw the same
        assert full.history.history[key] == resumed.history.history[key], key
