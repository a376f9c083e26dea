"""`--tensorboard` runs: besides the curves, TensorBoard's IMAGES tab gets a grid of training
images and the validation confusion matrix of every epoch, and its HPARAMS tab the run's
hyper-parameters. cnnkit writes the event files by hand; here TensorBoard's own reader reads
them back, as `tensorboard --logdir runs` would."""
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorboard")  # a dev dependency (requirements-dev.txt), not a run-time one
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata as hparams_metadata  # noqa: E402

from cnnkit.train.tbevents import read_scalars  # noqa: E402

SPEC = dict(model="seed003-cnn", dataset="digits", epochs=2, batch_size=64, seed=1, verbose=0,
            val_split=0.2, tensorboard=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import cnnkit

    return cnnkit.run(cnnkit.RunSpec(**SPEC, out=str(tmp_path_factory.mktemp("tb") / "cnn")))


def accumulator(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"images": 0, "tensors": 0})  # 0: keep all
    acc.Reload()
    return acc


def decode(event) -> np.ndarray:
    with Image.open(io.BytesIO(event.encoded_image_string)) as img:
        assert img.format == "PNG" and img.size == (event.width, event.height)
        return np.asarray(img)


def test_a_grid_of_training_images_once(run):
    from cnnkit.runs.prepare import prepare_data

    (event,) = accumulator(run.run_dir / "tensorboard" / "train").Images("training_images")
    assert event.step == 0
    grid = decode(event)  # 64 of digits' 8x8 images, each drawn 4x larger, 8 to a row
    assert grid.shape == (8 * 33 - 1, 8 * 33 - 1)  # grey: one channel
    x_train = prepare_data(run.spec)[1]["train"][0].numpy()[..., 0]  # (N, 8, 8)
    first = x_train[0].repeat(4, axis=0).repeat(4, axis=1)
    last = x_train[-1].repeat(4, axis=0).repeat(4, axis=1)
    assert np.array_equal(grid[:32, :32], first) and np.array_equal(grid[-32:, -32:], last)


def test_the_validation_confusion_matrix_of_every_epoch(run):
    events = accumulator(run.run_dir / "tensorboard" / "validation").Images("confusion_matrix")
    assert [e.step for e in events] == [1, 2]  # the epochs, as the scalars count them
    with Image.open(run.run_dir / "confusion_matrix.png") as drawn:  # the run's own (test split)
        assert all(decode(e).shape[:2] == (drawn.height, drawn.width) for e in events)


def test_the_curves_are_still_scalars_beside_the_images(run):
    tb = run.run_dir / "tensorboard"
    train, val = accumulator(tb / "train"), accumulator(tb / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} == set(train.Tags()["scalars"])
    assert [s.value for s in val.Scalars("epoch_loss")] == pytest.approx(run.history["val_loss"])
    (train_file,) = (tb / "train").glob("events.out.tfevents.*")
    assert set(read_scalars(train_file)) == set(train.Tags()["scalars"])  # images skipped


def test_hyper_parameters_in_the_hparams_tab(run):
    content = accumulator(run.run_dir / "tensorboard").PluginTagToContent("hparams")
    start = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG])
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
          for k, v in start.hparams.items()}
    assert hp["model"] == "seed003-cnn" and hp["dataset"] == "digits"
    assert hp["optimizer"] == "adam" and hp["lr"] == pytest.approx(0.001)  # Keras's default
    assert (hp["epochs"], hp["batch_size"], hp["seed"]) == (2, 64, 1)
    assert hp["nesterov"] is False and "clip_norm" not in hp  # unset: left blank
    assert "verbose" not in hp and "device" not in hp
    end = hparams_metadata.parse_session_end_info_plugin_data(
        content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS
    assert end.end_time_secs >= start.start_time_secs


def test_no_tensorboard_folder_without_the_flag(tmp_path):
    import cnnkit

    result = cnnkit.run(cnnkit.RunSpec(**(SPEC | {"tensorboard": False, "epochs": 1}),
                                       out=str(tmp_path / "plain")))
    assert not (result.run_dir / "tensorboard").exists()
