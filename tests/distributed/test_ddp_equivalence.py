"""Two processes train as one: the same global batch gives the same loss curve (to float32
rounding), evaluation over uneven shards is exact, and the RunResult comes back whole."""
import json

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit import RunSpec
from cnnkit.errors import CnnkitError
from cnnkit.runs.prepare import prepare_data
from cnnkit.train.trainer import Trainer

from _ddp_helpers import BASE

# Why 1e-5: each rank's gradient is its part's mean loss weighted by its share of the global
# batch, and DDP averages them, so the update is the single process's gradient summed in a
# different order: float32 rounding (~1e-7 relative per step) is the only difference. Measured
# over these 3 epochs (51 Adam steps): at most 1e-7 relative in every epoch's loss. A real fault
# is far larger: a rank training on the wrong samples, gradients not averaged, or per-rank batch
# norm statistics move an epoch's loss by 1e-3 to 1e-2 (measured: 5e-3 for batch norm).
TOLERANCE = 1e-5
PER_PROCESS = {**BASE, "batch_size": None, "batch_size_per_process": 32}  # 2 x 32: 64 in all


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs (threads=1): the same kernels, the same digits
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 3 epochs in one process (batch 64) and in two (32 per process)."""
    tmp = tmp_path_factory.mktemp("eq")
    two = cnnkit.run(RunSpec(**PER_PROCESS, epochs=3, out=str(tmp / "two")), nproc=2)
    one = cnnkit.run(RunSpec(**BASE, epochs=3, out=str(tmp / "one")))
    return one, two


def test_two_processes_follow_the_one_process_loss_curve(runs):
    one, two = runs
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert len(two.history[key]) == 3
        np.testing.assert_allclose(two.history[key], one.history[key], rtol=TOLERANCE,
                                   err_msg=key)
    assert two.metrics["test_loss"] == pytest.approx(one.metrics["test_loss"], rel=TOLERANCE)
    config = json.loads((two.run_dir / "config.json").read_text())
    assert config["resolved"]["processes"] == 2
    assert config["resolved"]["threads"]["processes"] == 2  # threads planned per process
    assert config["options"]["batch_size_per_process"] == 32


def test_the_result_comes_back_from_rank_zero(runs):
    _, two = runs
    assert two.metrics == json.loads((two.run_dir / "metrics.json").read_text())
    assert two.spec.seed == 1 and two.spec.batch_size_per_process == 32
    best = cnnkit.load(two.run_dir / "best")
    x = cnnkit.data.load_dataset("digits").x_train[:64].numpy()
    assert np.array_equal(two.model.predict(x), best.predict(x))
    assert two.report["accuracy"] == two.metrics["test_accuracy"]
    assert "test_accuracy=" in repr(two)


def test_validation_on_an_odd_split_is_exact(tmp_path, one_thread):
    """331 validation images: eval batches of 128, 128 and 75, two to rank 0 and one to rank 1
    (no padding); the figures equal one process's on the same weights to the last digit."""
    spec = RunSpec(**{**BASE, "val_split": 0.23}, epochs=2, out=str(tmp_path / "odd"))
    two = cnnkit.run(spec, nproc=2)
    _, splits = prepare_data(two.spec)
    xv, yv = splits["val"]
    assert len(xv) == 331 and len(xv) % 2 == 1
    last = cnnkit.load(tmp_path / "odd" / "last")  # the weights the last validation saw
    alone = Trainer(last, two.spec.train_config()).evaluate(xv, yv)
    assert two.history["val_loss"][-1] == alone["loss"]
    assert two.history["val_accuracy"][-1] == alone["accuracy"]
    # and the test split, evaluated on rank 0, is what cnnkit evaluate says
    ev = cnnkit.evaluate(two.run_dir)
    assert ev.accuracy == two.metrics["test_accuracy"]


def test_linear_lr_scaling_warms_up_to_lr_times_processes(tmp_path):
    two = cnnkit.run(RunSpec(**PER_PROCESS, epochs=3, lr=0.001, scale_lr="linear",
                             warmup_epochs=2, out=str(tmp_path / "lr")), nproc=2)
    lr = two.history["lr"]  # the rate of each epoch's last batch
    assert lr[0] < lr[1] < lr[2] == pytest.approx(0.002)
    assert 0.001 < lr[0] < 0.0016  # half-way through the warm-up's first epoch and a bit


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": None, "batch_size_per_process": 0},
     "batch_size_per_process=0 is out of range"),
    ({"batch_size": 64, "batch_size_per_process": 32}, "are both given"),
    ({"warmup_epochs": 2}, "warmup_epochs=2 warms up to the scaled learning rate"),
    ({"scale_lr": "square"}, "unknown scale_lr 'square'"),
    ({"sync_bn": True, "device": "cpu"}, "sync_bn=True needs CUDA"),
])
def test_bad_parallel_options_are_one_line_before_any_process_starts(tmp_path, changes, message):
    spec = RunSpec(**{**BASE, **changes}, epochs=1, out=str(tmp_path / "bad"))
    with pytest.raises(CnnkitError, match=message):
        cnnkit.run(spec, nproc=2)
    assert not (tmp_path / "bad").exists()


def test_nproc_must_be_a_positive_integer():
    with pytest.raises(CnnkitError, match=r"nproc=0 is out of range; valid: an integer >= 1"):
        cnnkit.run(RunSpec(**BASE, epochs=1), nproc=0)
