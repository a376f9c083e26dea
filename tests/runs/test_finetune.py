"""Fine-tuning a pretrained backbone (issue 28, item 2): `--backbone` builds the application
without its top, its preprocessing inside the model and a new head; the head trains with the
backbone frozen, then the unfrozen blocks too at a lower rate; the backbone's batch norm stays
in inference mode. The weights stand in for ImageNet's (no internet here): real Keras 3 builds
MobileNetV2 (alpha 0.35, 32x32), sets its batch-norm statistics from images, and saves a
`.weights.h5` that `--weights FILE` loads through the applications' one weights path."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit.cli import main  # noqa: E402
from cnnkit.errors import CnnkitError  # noqa: E402
from cnnkit.model.applications.blocks import block_names, blocks  # noqa: E402
from cnnkit.model.applications.finetune import finetune_model  # noqa: E402
from cnnkit.model.inputs import scales_own_pixels  # noqa: E402
from cnnkit.runs.spec import RunSpec  # noqa: E402
from cnnkit.train.hooks import Callback  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the download tests' local server
from _http_server import FileServer  # noqa: E402

SIZE, BACKBONE = 32, "mobilenetv2-0.35"
COLORS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


@pytest.fixture(scope="module")
def weights(keras, tmp_path_factory):
    """Keras's MobileNetV2 (alpha 0.35, no top) whose batch norms hold the statistics of the
    images they see, as a trained network's do (a random network's 0/1 ones make its features
    the same for every image), saved as a Keras weights file."""
    keras.backend.clear_session()
    net = keras.applications.MobileNetV2(weights=None, alpha=0.35, include_top=False,
                                         input_shape=(SIZE, SIZE, 3), pooling="avg")
    pixels = np.random.default_rng(0).uniform(0, 255, (32, SIZE, SIZE, 3)).astype(np.float32)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's own
    net(keras.applications.mobilenet_v2.preprocess_input(pixels), training=True)
    path = tmp_path_factory.mktemp("weights") / "mobilenetv2.weights.h5"
    net.save_weights(str(path))
    return net, path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A learner's first photo folder, in miniature: 3 classes of 12 noisy 32x32 RGB PNGs."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for k, color in enumerate(COLORS):
        (root / f"class{k}").mkdir()
        for i in range(12):
            a = np.clip(np.array(color) + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255)
            Image.fromarray(a.astype(np.uint8)).save(root / f"class{k}" / f"{i}.png")
    return root


def spec(photos, made, **changes) -> RunSpec:
    """A short fine-tuning run on `photos` from the weights file `made` (the fixture's)."""
    options = dict(backbone=BACKBONE, weights=str(made[1]), dataset=f"folder:{photos}",
                   head_epochs=1, unfreeze="block_16,Conv_1", epochs=2, batch_size=8, seed=0,
                   verbose=0, threads=1, precision="fp32")
    return RunSpec(**{**options, **changes})


class Snapshots(Callback):
    """The network's tensors before training and after each epoch."""

    def on_train_begin(self, logs=None):
        self.states = [self.net_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.net_weights())


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def layer_of(key: str) -> str:
    """'layers.<backbone>.net.layers.block_16_expand.conv.weight' -> 'block_16_expand'."""
    return key.split(".net.layers.")[1].split(".")[0] if ".net.layers." in key else key


def test_the_backbone_takes_raw_pixels_and_computes_what_keras_computes(weights):
    """The weights file loads by Keras's layer names, and the model's own first layer is
    MobileNetV2's preprocess_input: raw 0-255 pixels in give Keras's features."""
    import keras

    net, path = weights
    model = finetune_model(BACKBONE, str(path), (SIZE, SIZE, 3), 3)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    want = keras.ops.convert_to_numpy(net(keras.applications.mobilenet_v2.preprocess_input(
        pixels.copy()), training=False))
    layers = model.net.eval().layers
    base = model.layer_names()[2]
    with torch.no_grad():
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        got = layers[base](layers["preprocess_input"](x)).numpy()
    assert np.abs(want[0] - want[1]).max() > 0.1  # features that tell images apart
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert scales_own_pixels(model)  # predict/serve/export feed raw pixels


def test_head_then_unfrozen_blocks_train_and_batch_norm_never_moves(photos, weights):
    snaps = Snapshots()
    result = cnnkit.run(spec(photos, weights), callbacks=[snaps])
    start, head, tuned = snaps.states
    stats = {k for k in start if "running_" in k or "num_batches" in k}
    head_keys = {k for k in start if k.startswith("layers.predictions.")}
    # phase 1: the head alone moved; every byte of the backbone is as loaded
    assert changed(start, head) == head_keys
    # phase 2: exactly the unfrozen blocks' weights and the head moved
    unfrozen = {n for b in ("block_16", "Conv_1") for n in block_names(result.model)[b]}
    want = {k for k in start if layer_of(k) in unfrozen and k not in stats} | head_keys
    assert changed(head, tuned) == want
    # batch norm in inference mode throughout, the unfrozen blocks' too
    assert not stats & changed(start, tuned)
    assert result.history["lr"] == pytest.approx([1e-3, 1e-4])  # the fine-tune phase's lr / 10


def test_freeze_keeps_the_whole_backbone_frozen_all_run(photos, weights):
    snaps = Snapshots()
    result = cnnkit.run(spec(photos, weights, freeze=True, head_epochs=None, unfreeze=None),
                        callbacks=[snaps])
    head_keys = {k for k in snaps.states[0] if k.startswith("layers.predictions.")}
    assert changed(snaps.states[0], snaps.states[-1]) == head_keys  # a feature extractor
    (phase,) = result.metrics["phases"]
    assert (phase["phase"], phase["epochs"], len(phase["frozen_blocks"])) == ("head", [1, 2], 19)


def test_random_weights_let_the_backbone_s_batch_norm_learn(photos, weights):
    """`--weights none` has no statistics to keep: an unfrozen block's batch norm learns them
    (a random network's 0/1 statistics in inference mode give every image the same features)."""
    snaps = Snapshots()
    cnnkit.run(spec(photos, weights, weights="none", head_epochs=0, unfreeze="Conv_1", epochs=1),
               callbacks=[snaps])
    moved = changed(*snaps.states)
    assert "layers.mobilenetv2_0_35_32.net.layers.Conv_1_bn.running_mean" in moved
    assert not any("block_16" in k for k in moved)  # a frozen block's statistics stay


def test_the_report_shows_what_was_frozen_when(photos, weights, tmp_path):
    out = tmp_path / "run"
    cnnkit.run(spec(photos, weights, out=str(out)))
    phases = json.loads((out / "metrics.json").read_text())["phases"]
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["phases"] == phases
    assert config["options"]["backbone"] == BACKBONE
    head, tune = phases
    assert (head["phase"], head["epochs"], head["trained_blocks"]) == ("head", [1, 1], [])
    assert (tune["phase"], tune["epochs"], tune["trained_blocks"]) == (
        "fine-tune", [2, 2], ["block_16", "Conv_1"])
    assert tune["lr"] == pytest.approx(head["lr"] / 10)
    assert len(head["frozen_blocks"]) == 19 and len(tune["frozen_blocks"]) == 17
    model = cnnkit.load(out / "best")
    total = sum(p.numel() for p in model.net.parameters())
    assert head["trainable_params"] == 3 * (1280 + 1)  # the Dense head only
    assert head["trainable_params"] + head["frozen_params"] == total
    assert tune["trainable_params"] + tune["frozen_params"] == total
    md = (out / "report.md").read_text()
    assert "## Fine-tuning phases" in md and "| fine-tune | 2 | block_16, Conv_1 |" in md
    assert "Fine-tuning phases" in (out / "report.html").read_text()


def test_the_run_directory_loads_predicts_evaluates_and_exports(photos, weights, tmp_path,
                                                               capsys):
    out = tmp_path / "run"
    result = cnnkit.run(spec(photos, weights, out=str(out)))
    model = cnnkit.load(out)  # the run's best model
    image = photos / "class2" / "0.png"
    # to float32 rounding: a frozen block's batch norm may run folded into its convolution
    # in one and as its own step in the other (cnnkit.layers.graphnet.ConvBN)
    np.testing.assert_allclose(model.predict(str(image)), result.model.predict(str(image)),
                               atol=1e-4)
    assert main(["evaluate", str(out), "--json", "--runtime", "torch"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(out), "--out", str(onnx)]) == 0  # parity checked before writing
    assert onnx.is_file()


def test_resume_in_the_fine_tune_phase_repeats_the_uninterrupted_run(photos, weights, tmp_path):
    whole = cnnkit.run(spec(photos, weights, epochs=3, out=str(tmp_path / "whole")))

    class Interrupt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:  # killed after epoch 2: in the fine-tune phase (epochs 2-3)
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cnnkit.run(spec(photos, weights, epochs=3, out=str(tmp_path / "cut")),
                   callbacks=[Interrupt()])
    resumed = cnnkit.resume(tmp_path / "cut")
    assert resumed.history["lr"] == pytest.approx([1e-3, 1e-4, 1e-4])
    for key in ("loss", "accuracy", "lr"):  # to the last digit (times aside)
        assert resumed.history[key] == whole.history[key]
    a, b = whole.model.net.state_dict(), resumed.model.net.state_dict()
    assert not changed(a, b)


def test_blocks_follow_keras_layer_names_and_layer_trainable_works_per_block(weights, photos):
    model = finetune_model(BACKBONE, str(weights[1]), (SIZE, SIZE, 3), 3)
    names = block_names(model)
    assert list(names)[:3] == ["Conv1", "expanded_conv", "block_1"]
    assert list(names)[-2:] == ["block_16", "Conv_1"]
    assert names["block_16"][0] == "block_16_expand"
    base = model.get_layer(model.layer_names()[2])
    base.trainable = False  # Keras's base_model.trainable = False
    assert model.summary_dict()["trainable_params"] == 3 * 1281  # the head only
    base.trainable = True
    for name, layers in blocks(model).items():  # Python's way: a block's layers by name
        for layer in layers:
            layer.trainable = name == "block_15"
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    model.compile(optimizer="adam", precision="fp32", threads=1)
    model.fit(cnnkit.data.load_dataset(f"folder:{photos}"), epochs=1, batch_size=8, verbose=0,
              seed=0)
    stats = {k for k in before if "running_" in k or "num_batches" in k}
    want = {k for k in before if layer_of(k) in names["block_15"] and k not in stats}
    want |= {k for k in before if k.startswith("layers.predictions.")}
    assert changed(before, model.net.state_dict()) == want


@pytest.mark.parametrize("changes, message", [
    ({"--backbone": "mobilenet"}, "--backbone mobilenet is not known; valid: mobilenetv2, "
     "resnet50, vgg16, efficientnetb0, mobilenetv2-0.35"),
    ({"--weights": "nowhere.h5"}, "--weights nowhere.h5 is not a file; valid: imagenet"),
    ({"--unfreeze": "block_99"}, "--unfreeze block_99 is not a block of mobilenetv2_0.35_32; "
     "valid: an integer (the top N blocks), 'all', or block names: Conv1, expanded_conv"),
    ({"--unfreeze": "40"}, "--unfreeze 40: the backbone has 19 blocks; valid: 0..19"),
    ({"--head-epochs": "-1"}, "--head-epochs -1 is out of range"),
    ({"--freeze": None, "--head-epochs": "1"}, "--head-epochs 1 and freeze are both given"),
    ({"--model": "seed003-cnn"}, "--model seed003-cnn and a backbone (mobilenetv2-0.35) are "
     "both given"),
])
def test_a_bad_backbone_weights_or_block_is_one_line_and_exit_2(photos, weights, tmp_path,
                                                                capsys, changes, message):
    flags = {"--backbone": BACKBONE, "--weights": str(weights[1]),
             "--dataset": f"folder:{photos}", "--epochs": "1", "--out": str(tmp_path / "run"),
             "--quiet": None, **changes}
    args = [a for flag, value in flags.items() for a in (flag, value) if a is not None]
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.parametrize("mode, family", [("caffe", "resnet50"), ("caffe", "vgg16"),
                                          ("tf", "mobilenet_v2"), ("torch", "imagenet_utils")])
def test_preprocess_input_as_a_layer_is_keras_preprocess_input(keras, mode, family):
    from cnnkit.layers import PreprocessInput

    pixels = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    fn = getattr(keras.applications, family).preprocess_input
    want = fn(pixels.copy(), mode=mode) if family == "imagenet_utils" else fn(pixels.copy())
    module = PreprocessInput(mode).build((8, 8, 3), "keras")
    got = module(torch.from_numpy(pixels).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(want), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("backbone, top, count", [
    ("mobilenetv2", ["block_16", "Conv_1"], 19), ("resnet50", ["conv5_block2", "conv5_block3"], 17),
    ("vgg16", ["block4", "block5"], 5), ("efficientnetb0", ["block7a", "top"], 18)])
def test_every_backbone_builds_a_head_for_the_classes_with_blocks_by_keras_names(
        backbone, top, count):
    model = finetune_model(backbone, "none", (32, 32, 3), 4)
    assert model.output_shape == (4,)
    names = block_names(model)
    assert len(names) == count and list(names)[-2:] == top
    inner = model.get_layer(model.layer_names()[-3]).model
    assert sum(map(len, names.values())) == len(inner.layers) - 1  # every layer, in one block
    assert scales_own_pixels(model)


def test_the_finetune_recipe_and_the_defaults_without_it():
    recipe = RunSpec.from_recipe("finetune", dataset="folder:x")
    assert (recipe.backbone, recipe.weights, recipe.head_epochs, recipe.unfreeze) == (
        "mobilenetv2", "imagenet", 5, 3)
    assert (recipe.finetune_lr_factor, recipe.epochs, recipe.val_split) == (0.1, 10, 0.2)
    plain = RunSpec(backbone="vgg16", dataset="folder:x").resolved()
    assert (plain.weights, plain.head_epochs, plain.unfreeze, plain.finetune_lr_factor) == (
        "imagenet", 0, "all", 1.0)  # no head phase: everything trains at the rate given
    frozen = RunSpec(recipe="finetune", dataset="folder:x", freeze=True).resolved()
    assert (frozen.head_epochs, frozen.unfreeze) == (None, None)  # the recipe's phases yield
    with pytest.raises(CnnkitError, match="head_epochs=2 needs backbone"):
        RunSpec(model="seed003-cnn", dataset="digits", head_epochs=2).resolved()


def test_weights_imagenet_downloads_keras_s_file_for_the_backbone(photos, weights, monkeypatch):
    """`--weights imagenet` fetches the file Keras publishes for the backbone (MobileNetV2 0.35
    without top, 224's for a 32x32 input), here from a local server standing in for Keras's
    storage, and trains from it."""
    from cnnkit.model.applications import pretrained

    name = pretrained.imagenet_file("MobileNetV2", False, alpha=0.35, rows=224)
    with FileServer({name: weights[1].read_bytes()}) as srv:
        monkeypatch.setenv(pretrained.MIRROR_ENV, srv.base)
        snaps = Snapshots()
        cnnkit.run(spec(photos, weights, weights="imagenet", epochs=1), callbacks=[snaps])
        assert [r[0] for r in srv.requests] == [name]
    from_file = finetune_model(BACKBONE, str(weights[1]), (SIZE, SIZE, 3), 3).net.state_dict()
    start = snaps.states[0]
    assert not changed({k: v for k, v in start.items() if "predictions" not in k}, from_file)


def test_a_gray_dataset_at_an_image_size_trains_and_resumes_in_rgb(tmp_path, capsys):
    """digits (8x8 gray) brought to 32x32 RGB for the backbone, and again on resume, where the
    run builds its own copy of the model (model/)."""
    out = tmp_path / "run"
    args = ["train", "--backbone", BACKBONE, "--weights", "none", "--dataset", "digits",
            "--image-size", "32", "--epochs", "1", "--batch-size", "64", "--seed", "0",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0, \
        capsys.readouterr().err
    assert cnnkit.load(out).input_shape == (32, 32, 3)
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
