"""Imbalanced classes in the data stage: each class's loss weight ('balanced' as scikit-learn
computes it, or a mapping by class name or id, read from a JSON file on the command line), a
BatchLoader epoch that draws the classes equally, and the warning `data show` and a run give."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnkit.data.balance import (balanced_order, class_weights, imbalance_note,
                                 read_class_weight)
from cnnkit.data.base import Dataset
from cnnkit.data.batches import BatchLoader
from cnnkit.data.show import describe
from cnnkit.errors import CnnkitError

NAMES = ["cat", "dog", "owl"]
Y = torch.tensor([0] * 60 + [1] * 30 + [2] * 6)  # 10x between the largest and the smallest


def test_balanced_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    expected = compute_class_weight("balanced", classes=np.arange(3), y=Y.numpy())
    np.testing.assert_allclose(class_weights("balanced", Y, NAMES).numpy(), expected, rtol=1e-6)


def test_a_mapping_names_classes_by_name_or_id_and_the_others_weigh_one():
    w = class_weights({"owl": 5, "1": 2.5}, Y, NAMES)
    assert w.tolist() == [1.0, 2.5, 5.0]
    assert class_weights({0: 0.5}, Y, NAMES).tolist() == [0.5, 1.0, 1.0]


@pytest.mark.parametrize("setting, message", [
    ({"emu": 2}, r"unknown class 'emu'; valid: a class name \(cat, dog, owl\) or an id 0\.\.2"),
    ({"7": 2}, r"unknown class '7'"),
    ({"cat": -1}, r"weight -1 of class 'cat' is out of range; valid: a number >= 0"),
    ({"cat": "x"}, r"weight 'x' of class 'cat' is out of range"),
    ("heavy", r"class_weight='heavy' is neither 'balanced' nor a JSON file"),
    ({}, r"class_weight=\{\} is not understood"),
])
def test_a_bad_class_weight_is_one_line_naming_it(setting, message):
    with pytest.raises(CnnkitError, match=message) as e:
        class_weights(read_class_weight(setting), Y, NAMES)
    assert "\n" not in str(e.value) and e.value.option == "class_weight"


def test_a_json_file_becomes_its_mapping(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"owl": 4, "0": 1.5}))
    assert read_class_weight(str(path)) == {"owl": 4, "0": 1.5}
    path.write_text("[1, 2]")
    with pytest.raises(CnnkitError, match=r"w\.json holds list; valid: 'balanced', or a mapping"):
        read_class_weight(str(path))
    path.write_text("{oops")
    with pytest.raises(CnnkitError, match=r"w\.json"):
        read_class_weight(str(path))


def test_a_balanced_epoch_draws_every_class_about_equally_and_repeats_by_seed():
    draws = [balanced_order(Y, torch.Generator().manual_seed(s)) for s in range(20)]
    counts = torch.bincount(Y[torch.cat(draws)], minlength=3).double()
    assert len(draws[0]) == len(Y)
    share = counts / counts.sum()
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03), share
    again = balanced_order(Y, torch.Generator().manual_seed(0))
    assert torch.equal(draws[0], again)


def test_the_loader_with_the_balanced_sampler_and_without():
    x = torch.arange(len(Y), dtype=torch.uint8).view(-1, 1, 1, 1)
    plain = BatchLoader(x, Y, batch_size=32, seed=0)
    seen = torch.cat([yb for _, yb in plain])
    assert torch.equal(torch.bincount(seen), torch.tensor([60, 30, 6]))  # each image once
    balanced = BatchLoader(x, Y, batch_size=32, seed=0, sampler="balanced")
    assert len(balanced) == len(plain) == 3
    epochs = [torch.cat([yb for _, yb in balanced]) for _ in range(10)]
    owls = sum(int((e == 2).sum()) for e in epochs) / 10
    assert 22 < owls < 42  # a third of 96, where a shuffle gives 6
    balanced.set_epoch(3)
    assert torch.equal(torch.cat([yb for _, yb in balanced]), epochs[3])  # replayed exactly
    with pytest.raises(CnnkitError, match="unknown sampler 'even'; valid: balanced"):
        BatchLoader(x, Y, sampler="even")


def test_the_warning_starts_at_three_times_and_names_both_flags():
    assert imbalance_note([30, 10], ["a", "b"]) == (
        "the training classes are imbalanced: class 'a' has 30 images, class 'b' 10 (3.0x); "
        "consider --class-weight balanced or --sampler balanced")
    assert imbalance_note([29, 10], ["a", "b"]) is None
    assert imbalance_note([30, 0, 12], ["a", "b", "c"]) is None  # an absent class is not one


def test_describe_carries_the_warning():
    x = torch.zeros(len(Y), 2, 2, 1, dtype=torch.uint8)
    ds = Dataset("toy", NAMES, x, Y, x[:3], torch.tensor([0, 1, 2]), source="here")
    assert "class 'cat' has 60 images, class 'owl' 6 (10.0x)" in describe(ds)["imbalance"]
    even = Dataset("toy", NAMES, x[:9], torch.tensor([0, 1, 2] * 3), x[:3],
                   torch.tensor([0, 1, 2]), source="here")
    assert "imbalance" not in describe(even)


def test_the_ranks_of_a_distributed_run_split_the_same_balanced_batches():
    """Each rank trains on its part of every global batch (cnnkit.distributed.shard): with the
    balanced sampler too, the parts together are the single process's batches."""
    from types import SimpleNamespace

    from cnnkit.distributed.shard import ShardedBatchLoader

    x = torch.arange(len(Y), dtype=torch.uint8).view(-1, 1, 1, 1)
    one = BatchLoader(x, Y, batch_size=32, seed=4, sampler="balanced")
    ranks = [ShardedBatchLoader(BatchLoader(x, Y, batch_size=32, seed=4, sampler="balanced"),
                                SimpleNamespace(world=2, rank=r, stream=lambda s: s))
             for r in range(2)]
    for whole, *parts in zip(one, *ranks):
        assert torch.equal(whole[0], torch.cat([p[0] for p in parts]))
        assert torch.equal(whole[1], torch.cat([p[1] for p in parts]))
