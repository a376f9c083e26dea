import io

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.train.callbacks import Callback, CSVLogger, EarlyStopping
from cnnkit.train.trainer import TrainConfig, Trainer, resolve_precision

RICH = dict(epochs=4, batch_size=64, seed=7, verbose=0, lr=0.01, schedule="cosine",
            augment={"rotation_range": 10, "width_shift_range": 0.1}, label_smoothing=0.1)


def test_history_like_keras(make_model, digits):
    h = Trainer(make_model(), TrainConfig(epochs=2, batch_size=64, seed=0, verbose=0)).fit(*digits)
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    assert all(len(v) == 2 for v in h.history.values()) and h.epoch == [0, 1]


def test_same_seed_same_metrics_to_the_last_digit(make_model, digits):
    runs = [Trainer(make_model(dropout=0.3, seed=1), TrainConfig(**RICH)).fit(*digits).history
            for _ in range(2)]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert runs[0][key] == runs[1][key]
    other = Trainer(make_model(dropout=0.3, seed=1), TrainConfig(**RICH | {"seed": 8})).fit(*digits)
    assert other.history["loss"] != runs[0]["loss"]


class Crash(Callback):
    def on_epoch_begin(self, epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt  # the process dies after two completed epochs


def test_resume_gives_the_uninterrupted_result(make_model, digits, tmp_path):
    def callbacks(name):
        return [EarlyStopping(patience=10, restore_best_weights=True), CSVLogger(tmp_path / name)]

    full = Trainer(make_model(dropout=0.3, seed=1), TrainConfig(**RICH), callbacks("a.csv"))
    full.fit(*digits)

    first = Trainer(make_model(dropout=0.3, seed=1), TrainConfig(**RICH),
                    callbacks("b.csv") + [Crash()], state_dir=tmp_path / "state")
    with pytest.raises(KeyboardInterrupt):
        first.fit(*digits)
    # A new process: a freshly initialized model, the same config and callbacks.
    resumed = Trainer(make_model(dropout=0.3, seed=99), TrainConfig(**RICH), callbacks("b.csv"),
                      state_dir=tmp_path / "state").load_state(tmp_path / "state")
    assert resumed.epoch == 2
    resumed.fit(*digits)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed.history.history[key] == full.history.history[key], key
    for k, v in full.model.net.state_dict().items():
        assert torch.equal(resumed.model.net.state_dict()[k], v), k
    strip = [line.rsplit(",", 1)[0] for line in (tmp_path / "a.csv").read_text().splitlines()]
    assert [line.rsplit(",", 1)[0] for line in (tmp_path / "b.csv").read_text().splitlines()] == strip


def test_state_is_json_and_safetensors_only(make_model, digits, tmp_path):
    t = Trainer(make_model(), TrainConfig(epochs=1, batch_size=64, verbose=0))
    t.fit(*digits)
    t.save_state(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "SHA256SUMS", "model.safetensors", "state.json", "state.safetensors"]


def test_resume_with_another_config_is_refused(make_model, digits, tmp_path):
    t = Trainer(make_model(), TrainConfig(epochs=1, batch_size=64, verbose=0), state_dir=tmp_path)
    t.fit(*digits)
    other = Trainer(make_model(), TrainConfig(epochs=3, batch_size=32, verbose=0))
    with pytest.raises(CnnkitError, match=r"different configuration \(batch_size: 64 -> 32\)"):
        other.load_state(tmp_path)
    with pytest.raises(CnnkitError, match="not a training state directory"):
        other.load_state(tmp_path / "nothing")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("history"), r"corrupt training state \(no 'history' key\)"),
    (lambda s: s.pop("optimizer"), r"corrupt training state \(no 'optimizer' key\)"),
    (lambda s: s.update(stop_training="yes"),
     r"corrupt training state \('stop_training' is 'yes'; valid: bool\)"),
    (lambda s: s.update(history={"loss": [1.0], "bogus": 2}),
     r"corrupt training state \(its history does not fit this run"),
    (lambda s: s["optimizer"].update(param_groups=[]),
     r"corrupt training state \(its optimizer does not fit this run"),
], ids=["no-history", "no-optimizer", "wrong-type", "bad-history", "bad-optimizer"])
def test_a_state_file_edited_by_hand_is_one_line_naming_it(make_model, digits, tmp_path,
                                                          edit, message):
    import json

    t = Trainer(make_model(), TrainConfig(epochs=1, batch_size=64, verbose=0), state_dir=tmp_path)
    t.fit(*digits)
    state = json.loads((tmp_path / "state.json").read_text())
    edit(state)
    (tmp_path / "state.json").write_text(json.dumps(state))
    other = Trainer(make_model(), TrainConfig(epochs=2, batch_size=64, verbose=0))
    with pytest.raises(CnnkitError, match=f"^{tmp_path}/state.json: does not match its "
                       "checksum in SHA256SUMS"):
        other.load_state(tmp_path)
    (tmp_path / "SHA256SUMS").unlink()  # as a state from before checksums: the checks past them
    with pytest.raises(CnnkitError, match=f"^{tmp_path}/state.json: {message}"):
        other.load_state(tmp_path)


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=0), "epochs=0 is out of range; valid: an integer >= 1"),
    (dict(epochs=-3), "epochs=-3 is out of range"),
    (dict(batch_size=0), "batch_size=0 is out of range"),
    (dict(optimizer="adma"), "unknown optimizer 'adma'; valid: sgd, adagrad, rmsprop, adam, adamw"),
    (dict(loss="hinge"), "unknown loss 'hinge'"),
    (dict(lr=0), "lr=0 is out of range; valid: a number > 0"),
    (dict(label_smoothing=1.5), "label_smoothing=1.5 is out of range"),
    (dict(precision="fp8"), "unknown precision 'fp8'; valid: auto, bf16, fp16, fp32"),
    (dict(device="tpu"), "unknown device 'tpu'; valid: auto, cpu, cuda"),
    (dict(schedule="linear"), "unknown schedule 'linear'"),
    (dict(clip_norm=-1.0), "clip_norm=-1.0 is out of range"),
    (dict(momentum=0.9), "momentum applies to sgd and rmsprop, not adam"),
])
def test_bad_config_is_one_line_error(kwargs, message):
    with pytest.raises(CnnkitError, match=message) as e:
        TrainConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_unknown_option_from_dict():
    with pytest.raises(CnnkitError, match="unknown training option 'epoch'; valid: epochs"):
        TrainConfig.from_dict({"epoch": 3})
    assert TrainConfig.from_dict(TrainConfig(lr=0.1).to_dict()) == TrainConfig(lr=0.1)


def test_bad_data_is_one_line_error(make_model, digits):
    x, y, _, _ = digits
    t = Trainer(make_model(), TrainConfig(epochs=1, verbose=0))
    with pytest.raises(CnnkitError, match="images are 8x8x3 but the model expects 8x8x1"):
        t.fit(x.expand(-1, -1, -1, 3), y)
    with pytest.raises(CnnkitError, match="must be uint8 images"):
        t.fit(x.float(), y)
    with pytest.raises(CnnkitError, match="label 12 is out of range for a model with 10 classes"):
        t.fit(x, torch.where(y == 3, 12, y))
    with pytest.raises(CnnkitError, match="binary_crossentropy needs 2 classes; the data has 10"):
        Trainer(make_model(), TrainConfig(loss="binary_crossentropy", verbose=0)).fit(x, y)


def test_keras_lines_in_a_pipe_and_quiet(make_model, digits):
    out = io.StringIO()
    Trainer(make_model(), TrainConfig(epochs=2, batch_size=64, verbose=1), stream=out).fit(*digits)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert lines[1].startswith("Epoch 2/2 - ") and " - loss: " in lines[1]
    assert lines[1].split(" - ")[2:] == [f"{k}: " + lines[1].split(f"{k}: ")[1].split(" ")[0]
                                        for k in ("loss", "accuracy", "val_loss", "val_accuracy")]
    quiet = io.StringIO()
    Trainer(make_model(), TrainConfig(epochs=1, verbose=0), stream=quiet).fit(*digits)
    assert quiet.getvalue() == ""


def test_dry_run_is_one_batch_per_epoch(make_model, digits):
    seen = []

    class Count(Callback):
        def on_batch_end(self, batch, logs):
            seen.append(logs["size"])

    Trainer(make_model(), TrainConfig(epochs=3, batch_size=50, dry_run=True, verbose=0),
            [Count()]).fit(*digits)
    assert seen == [50, 50, 50]


def test_evaluate_and_predict_agree_with_the_history(make_model, digits):
    x, y, xv, yv = digits
    t = Trainer(make_model(), TrainConfig(epochs=2, batch_size=64, seed=0, verbose=0,
                                          eval_batch_size=128))
    h = t.fit(x, y, xv, yv)
    result = t.evaluate(xv, yv)
    assert result["loss"] == pytest.approx(h.history["val_loss"][-1], rel=1e-6)
    logits = t.predict_logits(xv)
    assert logits.shape == (300, 10) and logits.dtype == torch.float32
    assert (logits.argmax(1) == yv).float().mean().item() == pytest.approx(result["accuracy"])


def test_evaluation_puts_each_module_back_as_it_was(make_model, digits):
    _, _, xv, yv = digits
    t = Trainer(make_model(), TrainConfig(epochs=1, batch_size=64, seed=0, verbose=0))
    net = t.model.net.train()
    frozen = set(next(net.children()).eval().modules())  # e.g. a frozen batch norm
    t.evaluate(xv, yv)
    assert all(m.training != (m in frozen) for m in net.modules())


def test_l2_penalty_is_part_of_the_loss(make_model, digits):
    plain = Trainer(make_model(), TrainConfig(epochs=1, batch_size=64, seed=0, verbose=0))
    reg = Trainer(make_model(l2=0.01), TrainConfig(epochs=1, batch_size=64, seed=0, verbose=0))
    assert reg.fit(*digits).history["loss"][0] > plain.fit(*digits).history["loss"][0] + 0.01


def test_standardize_clip_and_bf16_train(make_model, digits):
    cfg = TrainConfig(epochs=3, batch_size=64, seed=0, verbose=0, lr=0.01, normalize="standardize",
                      clip_norm=1.0, precision="bf16")
    t = Trainer(make_model(), cfg)
    h = t.fit(*digits).history
    assert t.precision == "bf16" and h["loss"][-1] < h["loss"][0]
    assert t.preprocessing["mean"].shape == (1,) and 0 < t.preprocessing["std"].item() < 1


def test_precision_auto_follows_the_hardware():
    import cnnkit.train.trainer as tr

    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if tr.cpu_has_bf16() else "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


KILLED_RUN = """
import sys, threading
sys.path.insert(0, {tests!r})
from conftest import TinyModel, digits_data
from cnnkit.train.callbacks import Callback, EarlyStopping, CSVLogger
from cnnkit.train.trainer import Trainer, TrainConfig

class PauseInEpoch3(Callback):  # hold still a few batches into epoch 3 until the test kills us
    def on_epoch_begin(self, epoch, logs):
        self.epoch = epoch
    def on_batch_end(self, batch, logs):
        if self.epoch == 2 and batch == 3:
            print("inside epoch 3", flush=True)
            threading.Event().wait()

cfg = TrainConfig(**{cfg!r})
cbs = [EarlyStopping(patience=10, restore_best_weights=True), CSVLogger({csv!r}), PauseInEpoch3()]
Trainer(TinyModel(dropout=0.3, seed=1), cfg, cbs, state_dir={state!r}).fit(*digits_data())
"""


def test_resume_after_kill_9_gives_the_uninterrupted_result(make_model, digits, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from _child import wait_for_line

    from cnnkit.train.callbacks import Callback as Noop

    cfg = RICH | {"epochs": 5}
    state, csv_path = tmp_path / "state", tmp_path / "h.csv"
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), cfg=cfg, csv=str(csv_path),
                               state=str(state))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE)
    wait_for_line(proc, "inside epoch 3")  # epoch 2's state is written; epoch 3 is under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    cbs = [EarlyStopping(patience=10, restore_best_weights=True), CSVLogger(csv_path), Noop()]
    resumed = Trainer(make_model(dropout=0.3, seed=5), TrainConfig(**cfg), cbs, state_dir=state)
    resumed.load_state(state)
    assert resumed.epoch == 2
    resumed.fit(*digits)
    full = Trainer(make_model(dropout=0.3, seed=1), TrainConfig(**cfg),
                   [EarlyStopping(patience=10, restore_best_weights=True)])
    full.fit(*digits)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert resumed.history.history[key] == full.history.history[key], key
    assert len(csv_path.read_text().splitlines()) == 6  # header + 5 epochs, none twice
