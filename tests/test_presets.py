"""Every preset in the registry: builds, trains a step, has gradients, matches SEEDS.md, round-trips."""
import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.model.presets import PRESETS, create_model

# SEEDS.md: Keras's own summary totals and per-layer output shapes
SEED_TOTALS = {
    "seed000-first": 54_410, "seed000-mnist": 44_602, "seed001-example": 839_107,
    "seed002-fashion": 333_526, "seed003-cnn": 50_186, "seed003-deep": 1_379_557,
    "seed004-chollet": 93_322,
}
SEED_SHAPES = {
    "seed000-first": [(26, 26, 32), (13, 13, 32), (5408,), (10,)],
    "seed000-mnist": [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (1600,), (16,), (10,)],
    "seed001-example": [(22, 22, 32), (20, 20, 64), (20, 20, 64), (10, 10, 64), (6400,), (128,), (3,)],
    "seed002-fashion": [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64), (3136,), (100,),
                        (100,), (10,)],
    "seed003-cnn": [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64), (3136,), (10,)],
    "seed003-deep": [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64), (7, 7, 128),
                     (4, 4, 128), (2048,), (625,), (625,), (10,)],
    "seed004-chollet": [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 64), (576,),
                        (64,), (10,)],
}
SEED_LAYER_PARAMS = {320, 18_496, 36_928, 73_856, 54_090, 25_616, 170, 313_700, 1_010, 31_370,
                     1_280_625, 6_260, 650}


def test_every_seed_model_is_a_preset():
    assert set(SEED_TOTALS) <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(SEED_TOTALS))
def test_seed_summary_matches_seeds_md(name):
    model = create_model(name)
    assert model.count_params() == SEED_TOTALS[name]
    assert [r.output_shape for r in model.layer_infos()] == SEED_SHAPES[name]
    if name != "seed001-example":  # SEEDS.md lists per-layer counts for the 28×28×1 models
        assert {r.params for r in model.layer_infos() if r.params} <= SEED_LAYER_PARAMS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_forward_backward_and_gradients(name, preset_model):
    torch.manual_seed(0)
    model = preset_model(name)
    net = model.net.train()
    h, w, c = model.input_shape
    x = torch.rand(4, c, h, w)
    logits = net(x)
    assert logits.shape == (4, model.output_shape[0])
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4) % logits.shape[1])
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    assert sum(p.numel() for p in net.parameters()) == model.summary_dict()["trainable_params"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_save_load_round_trip(name, tmp_path, preset_model):
    model = preset_model(name)
    model.class_names = [f"c{i}" for i in range(model.output_shape[0])]
    x = np.random.default_rng(0).integers(0, 256, size=(3, *model.input_shape), dtype=np.uint8)
    before = model.predict(x)
    model.save(tmp_path / "m")
    loaded = cnnkit.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(x), before)
    assert loaded.class_names == model.class_names
    assert loaded.get_config() == model.get_config()


def test_unknown_preset_lists_valid_names():
    with pytest.raises(CnnkitError, match="unknown preset 'seed005'; valid: seed000-first"):
        create_model("seed005")


def test_preset_adapts_to_other_data():
    model = create_model("seed002-fashion", input_shape=(32, 32, 3), num_classes=4)
    assert model.output_shape == (4,) and model.input_shape == (32, 32, 3)


def test_seed003_uses_pytorch_init_and_xavier_head():
    torch.manual_seed(0)
    model = create_model("seed003-cnn")
    conv, linear = model.layer_module("conv2d").conv, model.layer_module("dense").linear
    assert conv.bias.abs().sum() > 0  # PyTorch default init: non-zero biases
    bound = (6 / (3136 + 10)) ** 0.5  # Xavier-uniform limit on the linear layer
    assert linear.weight.abs().max() <= bound and linear.weight.abs().max() > 0.9 * bound
    keras_model = create_model("seed002-fashion")
    assert keras_model.layer_module("conv2d").conv.bias.abs().sum() == 0  # Keras: zero biases
