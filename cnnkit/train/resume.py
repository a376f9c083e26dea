"""A Trainer's state for exact resume: what `save_state` writes (beside the weights, through
train/state.py's pickle-free format) and how `load_state` puts it back, checking each part."""
from __future__ import annotations

from pathlib import Path

import torch

from cnnkit.errors import CnnkitError
from cnnkit.errors import clipped
from cnnkit.model.saving import load_state as load_weights  # reads old positional files too
from cnnkit.train.config import TrainConfig
from cnnkit.train.state import STATE_JSON, check_state_keys, read_state

STATE_FORMAT = 1


def _match_param_strides(optimizer) -> None:
    """Give loaded optimizer moments their parameter's memory layout. Saved tensors come back
    contiguous, but channels_last conv weights are not, and the fused Adam kernels assume the
    moments share the parameter's strides: without this a resumed run drifts from the original."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape \
                        and value.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def trainer_state(trainer) -> dict:
    """The JSON-able (tensors included) state of `trainer` after its last finished epoch."""
    state = {
        "format": STATE_FORMAT, "epoch": trainer.epoch, "seed": trainer.seed,
        "config": trainer.config.to_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict() if trainer.schedule else trainer._schedule_state,
        "weight_average": trainer.average.state_dict() if trainer.average else None,
        "grad_scaler": trainer.scaler.state_dict() if trainer.scaler else None,
        "history": trainer.history.to_dict(),
        "stop_training": trainer.stop_training, "stop_reason": trainer.stop_reason,
        "threads": trainer.threads.current,  # an auto run resumes on the count it had
        "callbacks": {f"{i}:{type(cb).__name__}": cb.get_state()
                      for i, cb in enumerate(trainer.callbacks)},
    }
    return state


def roll_back(trainer, epoch: int, loss: float) -> None:
    """A NaN/inf loss: end the run without a checkpoint or state for this epoch, and put the
    last good weights back (from the saved state) so the model in memory stays usable."""
    trainer.diverged = trainer.stop_training = True
    trainer.progress.abort()
    if not trainer.stop_reason:
        trainer.stop_reason = (f"the loss became {loss} in epoch {epoch + 1}; training stopped "
                               "(lower the learning rate, or clip gradients with clip_norm)")
    trainer.epoch = epoch
    if trainer.state_dir is not None and Path(trainer.state_dir).is_dir():
        weights, state = read_state(trainer.state_dir)
        load_weights(trainer.model.net, weights, str(trainer.state_dir))
        if trainer.average is not None:
            trainer.average.load_state_dict(state["weight_average"])
        trainer.stop_reason += f"; the model is back at the end of epoch {epoch}"


def restore_backup(trainer, directory) -> bool:
    """BackupAndRestore: make `directory` the trainer's state directory, and load the state an
    interrupted fit left there, if any. Its seed is adopted: the Keras path draws a seed per
    fit, and the resumed epochs must shuffle and drop out as the interrupted ones would have."""
    trainer.state_dir = directory
    if not (Path(directory) / STATE_JSON).is_file():
        return False
    trainer.config.seed = trainer.seed = trainer.saved_config(directory).seed
    restore_state(trainer, directory)
    return True


def check_history(state: dict, where: str) -> None:
    """The epoch a state ends with is the last its history holds, and no metric has more
    values than it has epochs: a state.json whose epoch or history was edited says so."""
    epochs, epoch = state["history"].get("epoch"), state["epoch"]
    values = state["history"].get("history")
    if not isinstance(epochs, list) or not isinstance(values, dict):
        return  # not a history at all: restore_state names it
    if (epochs[-1:] != [epoch - 1] if epochs else epoch != 0) or any(
            not isinstance(v, list) or len(v) > len(epochs) for v in values.values()):
        raise CnnkitError(f"{where}: corrupt training state (epoch {epoch} does not match its "
                          f"history of {len(epochs)} epochs); a run resumes only the state it "
                          "saved")


def restore_state(trainer, directory) -> None:
    """Load `directory`'s state into `trainer` (same architecture, config and callbacks)."""
    weights, state = read_state(directory)
    where = f"{Path(directory) / STATE_JSON}"
    if state.get("format") != STATE_FORMAT:
        raise CnnkitError(f"{directory}: unsupported training state format {state.get('format')}")
    if isinstance(state.get("config"), dict):  # first: a state of other settings (ema on or
        # off) is that, not a corrupt one
        diffs = TrainConfig.from_dict(state["config"]).differences(trainer.config)
        if diffs:
            raise CnnkitError(f"cannot resume {directory} with a different configuration "
                              f"({'; '.join(diffs)})")
    check_state_keys(state, where, trainer.average is not None)
    check_history(state, where)
    load_weights(trainer.model.net, weights, str(directory))  # names a mismatched tensor
    part = "optimizer"
    try:  # torch's own loaders raise KeyError/ValueError on a state edited by hand
        trainer.optimizer.load_state_dict(state["optimizer"])
        _match_param_strides(trainer.optimizer)
        if trainer.average is not None:
            part = "weight_average"
            trainer.average.load_state_dict(state["weight_average"])
        part = "schedule"
        trainer._schedule_state = state["schedule"]
        if trainer.schedule is not None and state["schedule"] is not None:
            trainer.schedule.load_state_dict(state["schedule"])
        part = "grad_scaler"
        if trainer.scaler is not None and state.get("grad_scaler"):
            trainer.scaler.load_state_dict(state["grad_scaler"])
        part = "history"
        trainer.history = type(trainer.history)(**state["history"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise CnnkitError(f"{where}: corrupt training state (its {part} does not fit this "
                          f"run: {clipped(e, quote=False)})") from None
    trainer.epoch, trainer.seed = state["epoch"], state["seed"]
    trainer.stop_training, trainer.stop_reason = state["stop_training"], state["stop_reason"]
    if isinstance(state.get("threads"), int) and state["threads"] >= 1:
        trainer._resume_threads = state["threads"]
    saved = state["callbacks"]
    for i, cb in enumerate(trainer.callbacks):
        key = f"{i}:{type(cb).__name__}"
        if key in saved:
            cb.set_state(saved[key])
