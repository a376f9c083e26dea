import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.train.config import LOSSES, OPTIMIZERS
from cnnkit.train.optim import make_optimizer, make_schedule
from cnnkit.train.trainer import TrainConfig, Trainer


def _fit(make_model, digits, **cfg):
    x, y, xv, yv = digits
    units = 1 if cfg.get("loss") == "binary_crossentropy" else 10
    model = make_model(units=units, activation="sigmoid" if units == 1 else "softmax")
    if units == 1:  # two classes: even vs odd digits
        y, yv = y % 2, yv % 2
    trainer = Trainer(model, TrainConfig(batch_size=64, seed=0, verbose=0, **cfg))
    return trainer, trainer.fit(x, y, xv, yv).history


RATES = {"sgd": 0.1, "adagrad": 0.1, "adadelta": 1.0, "ftrl": 0.5}  # the rest: 0.01
# Adadelta's steps start near sqrt(epsilon) and FTRL is made for wide linear models: on a CNN
# both take far more than 4 epochs (in Keras too), so for them the loss need only go down
SLOW = ("adadelta", "ftrl")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_trains(make_model, digits, name):
    _, h = _fit(make_model, digits, optimizer=name, epochs=4, lr=RATES.get(name, 0.01))
    assert h["loss"][-1] < h["loss"][0] * (1.0 if name in SLOW else 0.9), h["loss"]


def test_sgd_with_nesterov_momentum_trains(make_model, digits):
    _, h = _fit(make_model, digits, optimizer="sgd", momentum=0.9, nesterov=True, epochs=3,
                lr=0.05)
    assert h["loss"][-1] < h["loss"][0] * 0.9


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains(make_model, digits, loss):
    _, h = _fit(make_model, digits, loss=loss, epochs=4, lr=0.01)
    assert h["loss"][-1] < h["loss"][0] * 0.9, h["loss"]
    assert h["val_accuracy"][-1] > 0.5


def test_keras_default_learning_rates():
    p = [torch.nn.Parameter(torch.zeros(3))]
    lrs = {n: make_optimizer(n, p).param_groups[0]["lr"] for n in OPTIMIZERS}
    assert lrs == {"sgd": 0.01, **{n: 0.001 for n in OPTIMIZERS if n != "sgd"}}  # Keras 3's
    adam = make_optimizer("adam", p)
    assert adam.param_groups[0]["epsilon"] == 1e-7
    assert make_optimizer("rmsprop", p).param_groups[0]["rho"] == 0.9
    assert make_optimizer("adamw", p).param_groups[0]["weight_decay"] == 0.004


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="adma"), "unknown optimizer 'adma'; valid: sgd, adagrad, rmsprop, adam, adamw, adadelta, adamax, nadam, ftrl, lion"),
    (dict(name="adam", lr=-1), "learning_rate=-1 is out of range; valid: a number > 0"),
    (dict(name="adam", options={"beta_2": 1.5}), "beta_2=1.5 is out of range; valid: a number >= 0 and < 1"),
    (dict(name="sgd", options={"amsgrad": True}), "amsgrad applies to adam and adamw, not sgd"),
    (dict(name="rmsprop", options={"rh0": 0.9}), "RMSprop: unknown argument rh0=0.9; valid: learning_rate, "
     "weight_decay, clipnorm, global_clipnorm, clipvalue, rho, momentum, epsilon, centered"),
    (dict(name="adam", momentum=0.9), "momentum applies to sgd and rmsprop, not adam"),
    (dict(name="sgd", nesterov=True), "nesterov needs optimizer 'sgd' with momentum > 0"),
])
def test_optimizer_errors(kwargs, message):
    with pytest.raises(CnnkitError, match=message):
        make_optimizer(params=[torch.nn.Parameter(torch.zeros(1))], **kwargs)


def _lrs(name, epochs=4, steps=5, **kw):
    opt = make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule(name, opt, epochs, steps, **kw)
    out = []
    for _ in range(epochs * steps):
        out.append(sched.lr)
        opt.step()
        sched.step()
    return out


def test_schedules_change_the_learning_rate_as_named():
    assert set(_lrs("constant")) == {1.0}
    step = _lrs("step", step_size=1, gamma=0.5)
    assert step[::5] == [1.0, 0.5, 0.25, 0.125] and step[:5] == [1.0] * 5  # per epoch
    cos = _lrs("cosine")
    assert cos[0] == 1.0 and cos[-1] < 0.01 and all(a >= b for a, b in zip(cos, cos[1:]))
    one = _lrs("onecycle", epochs=10, steps=10)
    peak = one.index(max(one))
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0, abs=1e-3)
    assert 20 <= peak <= 30 and one[-1] < 1e-3  # warm-up for 25% of the run, then anneal


def test_schedule_state_round_trip():
    opt = make_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule("cosine", opt, 2, 10)
    for _ in range(7):
        sched.step()
    sched.scale = 0.5
    sched.apply()
    state = sched.state_dict()
    opt2 = make_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = make_schedule("cosine", opt2, 2, 10)
    sched2.load_state_dict(state)
    assert sched2.lr == sched.lr and sched2.steps == 7


def test_unknown_schedule():
    with pytest.raises(CnnkitError, match="unknown schedule 'linear'; valid: constant, step, cosine, onecycle"):
        make_schedule("linear", make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))]), 1, 1)
