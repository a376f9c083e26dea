"""A PyTorch user's own torch.optim optimizer and scheduler objects given to `cnnkit.fit`: the
engine steps them as a plain PyTorch loop does (optimizer per batch, scheduler per epoch), so
the weights after training equal that loop's, batch for batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.data.batches import epoch_generator
from cnnkit.errors import CnnkitError

N, BATCH, EPOCHS, SEED = 48, 16, 3, 5


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):  # (B, 1, 8, 8)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 8, 8, 1), dtype=np.uint8), np.arange(N) % 3


def _plain_loop(net, opt, sched, x, y, per_batch=False):
    """torch's tutorial loop over the batches cnnkit's loader draws for (SEED, epoch)."""
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().float() / 255
    labels = torch.from_numpy(y).long()
    for epoch in range(EPOCHS):
        order = torch.randperm(N, generator=epoch_generator(SEED, epoch, 0))
        for start in range(0, N, BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad()
            nn.functional.cross_entropy(net(images[idx]), labels[idx]).backward()
            opt.step()
            if per_batch:
                sched.step()
        if not per_batch:
            sched.step()


def _pair(make_opt, make_sched):
    torch.manual_seed(1)
    ours, theirs = Net(), Net()
    theirs.load_state_dict(ours.state_dict())
    opt_ours, opt_theirs = make_opt(ours), make_opt(theirs)
    return (ours, opt_ours, make_sched(opt_ours)), (theirs, opt_theirs, make_sched(opt_theirs))


@pytest.mark.parametrize("make_opt, make_sched, per_batch", [
    (lambda m: torch.optim.Adadelta(m.parameters()),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5), False),
    (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=EPOCHS * 3), True),
], ids=["adadelta-steplr-per-epoch", "sgd-onecycle-per-batch"])
def test_weights_equal_a_plain_torch_loop(make_opt, make_sched, per_batch):
    x, y = _data()
    (ours, opt, sched), (theirs, opt_t, sched_t) = _pair(make_opt, make_sched)
    model = cnnkit.fit(ours, x, y, epochs=EPOCHS, batch_size=BATCH, seed=SEED, verbose=0,
                       precision="fp32", optimizer=opt, scheduler=sched,
                       scheduler_step="batch" if per_batch else "epoch")
    _plain_loop(theirs, opt_t, sched_t, x, y, per_batch)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert opt.param_groups[0]["lr"] == opt_t.param_groups[0]["lr"]  # the scheduler's rate
    if not per_batch:  # the rate each epoch trained at, halved after each epoch by StepLR
        assert model.history.history["lr"] == [1.0, 0.5, 0.25]
    assert sched.last_epoch == sched_t.last_epoch


def test_an_optimizer_over_other_parameters_is_one_clear_error():
    x, y = _data()
    other = Net()
    with pytest.raises(CnnkitError, match=r"the optimizer Adam holds 4 of 4 parameters that are "
                                          r"not this model's"):
        cnnkit.fit(Net(), x, y, epochs=1, verbose=0, optimizer=torch.optim.Adam(other.parameters()))


def test_an_optimizer_over_frozen_parameters_only_is_refused():
    x, y = _data()
    net = Net()
    net.conv.requires_grad_(False)
    with pytest.raises(CnnkitError, match=r"holds none of the model's trainable parameters"):
        cnnkit.fit(net, x, y, epochs=1, verbose=0,
                   optimizer=torch.optim.SGD(net.conv.parameters(), lr=0.1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0.1), r"lr=0.1 is a setting of an optimizer by name; the SGD object given holds "
                   r"its own"),
    (dict(schedule="cosine", scheduler="S"), r"schedule='cosine' and scheduler= both set"),
    (dict(scheduler_step="step", scheduler="S"), r"unknown scheduler_step 'step'; valid: "
                                                 r"epoch, batch"),
])
def test_conflicting_settings_are_one_clear_error(kwargs, message):
    x, y = _data()
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    if kwargs.get("scheduler") == "S":
        kwargs["scheduler"] = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    with pytest.raises(CnnkitError, match=message):
        cnnkit.fit(net, x, y, epochs=1, verbose=0, optimizer=opt, **kwargs)


def test_a_scheduler_without_its_optimizer_is_refused():
    x, y = _data()
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    with pytest.raises(CnnkitError, match=r"give that optimizer too"):
        cnnkit.fit(net, x, y, epochs=1, verbose=0, scheduler=sched)
    with pytest.raises(CnnkitError, match=r"scheduler_step= says when to step a scheduler"):
        cnnkit.fit(net, x, y, epochs=1, verbose=0, optimizer=opt, scheduler_step="batch")
    other = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(net.parameters(), lr=0.1), 1)
    with pytest.raises(CnnkitError, match=r"the scheduler StepLR steps another optimizer"):
        cnnkit.fit(net, x, y, epochs=1, verbose=0, optimizer=opt, scheduler=other)


def test_a_run_directory_needs_an_optimizer_by_name(tmp_path):
    net = Net()
    with pytest.raises(CnnkitError, match=r"records its optimizer by name, so that "
                                          r"resume=True can rebuild it"):
        cnnkit.fit(net, "digits", epochs=1, out=str(tmp_path / "run"),
                   optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    assert not (tmp_path / "run").exists()


def test_backup_and_restore_resumes_the_objects_exactly(tmp_path):
    """An interrupted fit with BackupAndRestore goes on from the optimizer's and the
    scheduler's saved state_dicts: the same weights as the fit that was never interrupted."""
    from cnnkit.train.callbacks import BackupAndRestore, Callback

    class Crash(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    x, y = _data()

    def objects():
        torch.manual_seed(1)
        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        return net, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    whole, opt, sched = objects()
    cnnkit.fit(whole, x, y, epochs=EPOCHS, batch_size=BATCH, seed=SEED, verbose=0,
               precision="fp32", optimizer=opt, scheduler=sched)
    net, opt, sched = objects()
    backup = BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        cnnkit.fit(net, x, y, epochs=EPOCHS, batch_size=BATCH, seed=SEED, verbose=0,
                   precision="fp32", optimizer=opt, scheduler=sched, callbacks=[backup, Crash()])
    net, opt, sched = objects()  # a fresh process's objects
    cnnkit.fit(net, x, y, epochs=EPOCHS, batch_size=BATCH, seed=SEED, verbose=0,
               precision="fp32", optimizer=opt, scheduler=sched,
               callbacks=[BackupAndRestore(str(tmp_path / "backup"))])
    for a, b in zip(net.state_dict().values(), whole.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sched.last_epoch == EPOCHS
