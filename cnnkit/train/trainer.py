"""The fit loop: Keras's `fit` / `evaluate` semantics, built for CPU speed and exact resume.
Every way to train runs it: `cnnkit.run`, `cnnkit.fit(module)`, `Sequential.fit`, `Trainer`
itself, and cnnkit.keras's `Model.fit` (its compiled loss, metrics and optimizer given as an
`Objective`, its float arrays used as given, its generators as loaders: cnnkit.train.feeds).

Speed: the data stays one uint8 tensor batched by index (cnnkit.data.batches); the model runs
channels_last, under bf16 autocast where the hardware has bf16 math; the loop keeps running
sums on tensors and reads them back once per epoch (a host sync per batch only when a callback
asks for batch losses or the live bar redraws); evaluation runs under inference_mode in large
batches.

Reproducibility and resume: everything random is derived from (seed, epoch): the shuffle order
and augmentation draws (BatchLoader's per-epoch generators) and dropout (the global generator,
re-seeded at each epoch start). So an epoch's arithmetic depends only on the weights and
optimizer state it starts from, and a run resumed after epoch k from `save_state` (weights,
optimizer, schedule, history, callbacks) repeats the uninterrupted run to the last digit.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnkit.train.averaging import WeightAverage
from cnnkit.data.batches import channel_stats, epoch_generator
from cnnkit.errors import CnnkitError
from cnnkit.model.inputs import scales_own_pixels
from cnnkit.train.callbacks import BackupAndRestore, Callback, History, overrides
from cnnkit.train.config import LR_FIND, TrainConfig
from cnnkit.train.losses import config_losses, correct_count
from cnnkit.train.memory import keep_freed_memory
from cnnkit.train.optim import make_optimizer, make_schedule
from cnnkit.train.optimizers import frozen_norms, trained_parameters  # layers' `trainable` flags
from cnnkit.train.own import OwnSchedule, own_optimizer
from cnnkit.train.precise_bn import recomputed_note, settle_norms
from cnnkit.train.progress import Progress
from cnnkit.train.evaluation import batched_logits, evaluate_batches
from cnnkit.train.device import (AUTOCAST_DTYPES, autocast, cpu_has_bf16,  # noqa: F401
                                 resolve_device, resolve_precision)
from cnnkit.train.feeds import as_inputs, check_data, is_loader, make_loader, model_input
from cnnkit.train.state import read_state, write_state

__all__ = ["TrainConfig", "Trainer", "History", "resolve_device", "resolve_precision"]
DROPOUT_STREAM = 2  # epoch_generator streams: 0 shuffle, 1 augmentation (BatchLoader), 2 dropout


@dataclass
class Objective:
    """A caller's own compile() (the Keras path): the loop runs its optimizer, loss and metrics
    instead of the config's. Its data are float arrays used as given, or a loader; its logs are
    Keras's (the loss and the metrics, no lr or time) and so are its printed lines."""

    optimizer: Callable  # (parameters) -> the torch optimizer (built once, kept across fits)
    loss: Callable  # (logits (B, K), targets) -> a scalar tensor
    metrics: dict  # logged name -> (logits, targets) -> right answers in the batch (a tensor)
    train_loss: Callable | None = None  # the training batches' loss (class weights), if not `loss`
    hparams: dict | None = None  # its names for TensorBoard's HPARAMS tab (optimizer, loss)


class Trainer:
    """Trains `model` (see the model contract: `.net` returns logits) with `config`.

    >>> history = Trainer(model, TrainConfig(epochs=5, batch_size=100, seed=1)).fit(x, y, xv, yv)

    `state_dir`: where the complete training state is written (atomically) after every epoch;
    `Trainer(same model, same config).load_state(state_dir).fit(...)` then continues exactly.
    `governed=True` (cnnkit.run passes it): the run may set process-wide things, the thread
    governor's count (`threads` auto) and glibc's malloc thresholds (cnnkit.train.memory);
    otherwise (a notebook's fit) they stay the caller's, unless `config.threads` asks.
    `objective`: a caller's optimizer, loss and metrics (cnnkit.keras's compile).
    `optimizer`, `scheduler`, `scheduler_step`: a PyTorch user's own torch.optim objects, in
    place of the config's optimizer and schedule (cnnkit.train.own).
    """

    def __init__(self, model, config: TrainConfig | None = None,
                 callbacks: list[Callback] = (), state_dir=None, stream=None, parallel=None,
                 governed: bool = False, objective: Objective | None = None,
                 optimizer=None, scheduler=None, scheduler_step: str = "epoch"):
        self.model, self.config, self.objective = model, config or TrainConfig(), objective
        cfg = self.config
        if cfg.lr == LR_FIND:  # a run replaces it by the finder's rate before training
            raise CnnkitError("lr='find' is the learning-rate finder's, for a run (cnnkit.run, "
                              "cnnkit train --lr find); valid here: a number > 0",
                              option="lr", value=cfg.lr)
        if governed:  # a run cnnkit started (cnnkit.run): process-wide settings are its own
            keep_freed_memory()  # no page faults for the memory each step frees and takes again
        self.callbacks = list(callbacks)
        self.state_dir = state_dir
        self.parallel = parallel  # this rank of a data-parallel run (cnnkit.distributed)
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        # fp16 needs loss scaling (bf16 has fp32's range and does not): torch's own GradScaler
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        if cfg.test_time_flip:
            model.test_time_flip = True  # saved with the model: evaluate/predict do the same
        from cnnkit.train.module import as_model

        self.model = model = as_model(model)  # a plain nn.Module: cnnkit.train.module
        # channels_last only for networks cnnkit built; a user's module gets NCHW as it expects
        layout = {} if getattr(model, "foreign", False) else {"memory_format": torch.channels_last}
        model.net.to(self.device, **layout)
        self.seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(4), "little")
        # Weight averaging: the network holds the averages between epochs and after training.
        self.average = WeightAverage(model.net, cfg.ema) if cfg.ema else None
        if objective is not None:
            self.optimizer = objective.optimizer(trained_parameters(model))
        elif optimizer is not None:
            self.optimizer = own_optimizer(optimizer, trained_parameters(model), model)
        else:
            self.optimizer = make_optimizer(cfg.optimizer, trained_parameters(model), cfg.lr,
                                            cfg.momentum, cfg.nesterov, cfg.weight_decay,
                                            cfg.optimizer_options)
        self.schedule = None  # built by fit, once the number of batches is known
        self.own_scheduler = None if scheduler is None else (scheduler, self.optimizer,
                                                              scheduler_step)
        self._schedule_state = None  # loaded before the schedule exists
        self.history = History()
        self.history.set_model(model)
        self.shuffle = True  # Keras's fit(shuffle=False) turns it off
        self.epoch = 0  # epochs completed
        self.stop_training, self.stop_reason, self.diverged = False, None, False
        self.precise_bn = None  # {"images", "steps"} once batch-norm statistics are recomputed
        self.progress = Progress(cfg.verbose, cfg.epochs, stream,
                                 keras=objective is not None)
        self.loss_fn = objective.loss if objective else None  # else built by fit from the data
        self.train_loss_fn = (objective.train_loss or objective.loss) if objective else None
        self.metrics = objective.metrics if objective else {"accuracy": correct_count}
        self.preprocessing = {"normalize": cfg.normalize, "mean": None, "std": None}
        if cfg.normalize == "unit" and scales_own_pixels(model):  # Rescaling(1/255) first:
            one = torch.ones(1, device=self.device)  # raw pixels, (x / 255 - 0) / (1 / 255)
            self.preprocessing.update(normalize="standardize", mean=0 * one, std=one / 255)
        saved = getattr(model, "preprocessing", None) or {}
        if cfg.normalize == "standardize" and saved.get("normalize") == "standardize" \
                and saved.get("mean") is not None:  # a trained model's own statistics
            self.preprocessing.update(
                mean=torch.tensor(saved["mean"], dtype=torch.float32, device=self.device),
                std=torch.tensor(saved["std"], dtype=torch.float32, device=self.device))
        self._forward = torch.compile(model.net) if cfg.compile else model.net
        self._resume_threads = None  # the thread count a loaded state stopped with
        self._train_forward = self._forward  # DDP-wrapped in a data-parallel fit
        from cnnkit.train.threads import ThreadGovernor, caller_threads, plan_threads

        # CPU threads (cnnkit.train.threads): fixed, or measured as the steps run
        if self.device.type != "cpu":
            plan = plan_threads(cfg.threads or 1)
        elif governed or cfg.threads is not None:
            plan = plan_threads(cfg.threads, parallel.local_world if parallel else 1)
        else:  # not a run cnnkit started, and no `threads` asked for: the caller's own count
            plan = caller_threads()
        self.threads = ThreadGovernor(plan)

    # --- helpers -------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.progress.say(message)

    def _autocast(self):
        return autocast(self.device.type, self.precision)

    def _penalty(self):  # a Keras model's L1 and L2 terms, a cnnkit Sequential's L2
        fn = getattr(self.model, "penalty", None) or getattr(self.model, "l2_penalty", None)
        return fn() if fn is not None else 0.0

    def _check_data(self, x, y, what: str):
        return check_data(self.model, x, y, what, own=self.objective is not None)

    def _setup_loss(self, x, ys) -> None:
        """Build the loss once: the class count comes from the model's class names, else from
        its output units (one unit means two classes, sigmoid)."""
        if self.loss_fn is not None:
            return
        names = getattr(self.model, "class_names", None)
        if names:
            k = len(names)
        else:
            from cnnkit.model.outputs import class_count

            k = class_count(self.predict_logits(x[:1]).shape[1])
        for y in ys:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= k:
                bad = lo if lo < 0 else hi
                raise CnnkitError(f"label {bad} is out of range for a model with {k} classes "
                                  f"(valid: 0..{k - 1})")
        self.num_classes = k
        self.loss_fn, self.train_loss_fn = config_losses(
            self.config, k, self.model.net.output_activation, ys[0], names)

    def preprocessing_record(self) -> dict:
        """How pixels become the network's input, as saved in model.json: evaluate and predict
        must scale a saved model's images exactly as its training did."""
        p = self.preprocessing
        if p["normalize"] != "standardize" or p["mean"] is None:
            return {"normalize": p["normalize"]}
        return {"normalize": "standardize", "mean": p["mean"].cpu().tolist(),
                "std": p["std"].cpu().tolist()}

    def _input(self, xb: torch.Tensor) -> torch.Tensor:
        return model_input(xb, self.preprocessing)

    # --- training ------------------------------------------------------------------------------
    def _train_step(self, xb, yb, weight: float = 1.0):
        """`weight`: this rank's share of the global batch (cnnkit.distributed.shard)."""
        with self._autocast():
            logits = self._train_forward(xb)  # (B, K)
        # a rank whose part of a last, tiny global batch is empty still joins the all-reduce
        loss = self.train_loss_fn(logits, yb) + self._penalty() if len(yb) else logits.sum() * 0.0
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler  # fp16: loss scaling keeps small gradients from flushing to zero
        (loss * weight if scaler is None else scaler.scale(loss * weight)).backward()
        if self.config.clip_norm:
            if scaler is not None:
                scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.net.parameters(), self.config.clip_norm,
                                           foreach=True)
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        if self.average is not None:
            self.average.update()
        self.schedule.step()
        return loss.detach(), logits.detach()

    def fit(self, x_train, y_train=None, x_val=None, y_val=None,
            initial_epoch: int | None = None, validation_freq: int = 1,
            steps_per_epoch: int | None = None) -> History:
        """Train until `config.epochs` (counting from `initial_epoch`, default: the epochs
        already done, so a loaded state continues). Returns the History. `x_train`/`x_val`
        may be loaders of ready batches (feeds.is_loader) with no labels beside them;
        validation runs after every `validation_freq`-th epoch; `steps_per_epoch` caps the
        batches of an epoch."""
        cfg = self.config
        if any(cb.restore(self) for cb in self.callbacks if isinstance(cb, BackupAndRestore)):
            initial_epoch = None  # as Keras: the backup's epoch wins
        x_train, y_train = self._check_data(x_train, y_train, "training data")
        has_val = x_val is not None
        if has_val:
            x_val, y_val = self._check_data(x_val, y_val, "validation data")
        pixels = not is_loader(x_train) and x_train.dtype == torch.uint8
        if pixels and cfg.normalize == "standardize":  # this training set's statistics
            mean, std = channel_stats(x_train)
            self.preprocessing.update(mean=mean.to(self.device), std=std.to(self.device))
        if pixels:  # float input is the caller's scale (cnnkit.keras records it)
            self.model.preprocessing = self.preprocessing_record()  # saved with the model
            self._setup_loss(x_train, [y_train] + ([y_val] if has_val else []))
        # for callbacks that look at the data (TensorBoard's images): references, not copies
        self.train_data = (x_train, y_train) if pixels else None
        self.validation_data = (x_val, y_val) if has_val and pixels else None
        loader = make_loader(self, x_train, y_train)
        par = self.parallel
        if par is not None:  # this rank's part of every global batch
            loader = par.shard(loader)
        steps = 1 if cfg.dry_run else min(len(loader), steps_per_epoch or len(loader))
        if self.schedule is None:
            self.schedule = make_schedule(cfg.schedule, self.optimizer, cfg.epochs, steps,
                                          step_size=cfg.step_size, gamma=cfg.gamma) \
                if self.own_scheduler is None else OwnSchedule(*self.own_scheduler, steps)
            if par is not None:
                par.scale_schedule(self.schedule, steps)  # scale_lr="linear", with warm-up
            if self._schedule_state is not None:
                self.schedule.load_state_dict(self._schedule_state)
        start = self.epoch if initial_epoch is None else int(initial_epoch)
        names = ["loss", *self.metrics]
        names += [f"val_{k}" for k in names] if has_val else []
        names += [] if self.objective else ["lr", "time"]  # Keras logs neither
        self.model.stop_training = False  # a Keras callback's way to stop: set it True
        for cb in self.callbacks:
            cb.trainer = self
            cb.set_model(self.model)
            cb.set_params({"epochs": cfg.epochs, "steps": steps, "verbose": cfg.verbose})
        for cb in self.callbacks:
            cb.on_train_begin({"metrics": names})
        from cnnkit.train.threads import start_fit_threads

        start_fit_threads(self, loader, start)
        if par is not None:  # after load_state: DDP starts every rank from rank 0's weights
            self._train_forward = par.wrap(self._forward)

        for epoch in range(start, cfg.epochs):
            if self.stop_training:  # a loaded state that had already stopped
                break
            self.epoch = epoch
            stream = DROPOUT_STREAM if par is None else par.stream(DROPOUT_STREAM)
            torch.manual_seed(epoch_generator(self.seed, epoch, stream).initial_seed())
            loader.set_epoch(epoch)
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch, {})
            self.progress.epoch_begin(epoch, steps)
            t0 = time.perf_counter()
            lr, logs = self._train_epoch(loader, epoch, steps)
            if not math.isfinite(logs["loss"]):
                self._diverge(epoch, logs["loss"])
                break
            if self.average is not None:
                self.average.use_average()  # validation, callbacks and checkpoints see these
            if pixels and self.objective is None:  # short runs: batch-norm statistics recomputed
                self.precise_bn = settle_norms(self, x_train, frozen_norms(self.model),
                                               (epoch + 1) * steps) or self.precise_bn
            if has_val and (epoch + 1) % validation_freq == 0:
                val = self._evaluate(x_val, y_val, max_batches=1 if cfg.dry_run else None)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if not self.objective:
                logs.update(lr=lr, time=time.perf_counter() - t0)
            self.epoch = epoch + 1
            self.progress.epoch_end(epoch, logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
            self.history.append(epoch, logs)  # after the callbacks, as Keras: what they left
            self._heed_model_stop()
            if par is not None:  # callbacks decide on rank 0: every rank stops with it
                self.stop_training, self.stop_reason = par.agree_stop(self.stop_training,
                                                                      self.stop_reason)
            if self.state_dir is not None:
                self.save_state(self.state_dir)
            if self.stop_training:
                break
        for cb in self.callbacks:
            cb.on_train_end({})
        if self.precise_bn and not self.diverged:
            self.say(recomputed_note(self.precise_bn))
        if self.stop_reason:
            self.say(f"Stopped: {self.stop_reason}")
        return self.history

    def _heed_model_stop(self) -> None:
        if getattr(self.model, "stop_training", False) and not self.stop_training:
            self.stop_training = True
            self.stop_reason = self.stop_reason or "a callback set model.stop_training"

    def _train_epoch(self, loader, epoch: int, steps: int) -> tuple[float, dict]:
        """One epoch's batches; returns the last batch's learning rate and the epoch's logs."""
        if self.average is not None:
            self.average.use_own()  # train the network's own weights
        self.model.net.train()
        for norm in frozen_norms(self.model):  # Keras: a frozen BatchNormalization keeps
            norm.eval()  # its statistics
        begin = [cb for cb in self.callbacks if overrides(cb, "on_train_batch_begin")]
        end = [cb for cb in self.callbacks if overrides(cb, "on_train_batch_end")
               or overrides(cb, "on_batch_end")]  # each costs a host sync per batch
        loss_sum = torch.zeros((), device=self.device)
        hits = {k: torch.zeros((), device=self.device) for k in self.metrics}
        seen = 0
        t_step = time.perf_counter()
        for i, (xb, yb) in enumerate(loader):
            lr = self.schedule.lr  # the rate this batch uses
            for cb in begin:
                cb.on_train_batch_begin(i, {})
            loss, logits = self._train_step(xb, yb, getattr(loader, "weight", 1.0))
            self.threads.step(time.perf_counter() - t_step, len(yb), epoch, i)
            t_step = time.perf_counter()
            loss_sum += loss * len(yb)
            for k, count in self.metrics.items():
                hits[k] += count(logits, yb)
            seen += len(yb)
            if end:
                blogs = {"loss": loss.item(), "size": len(yb)}
                for cb in end:
                    cb.on_train_batch_end(i, blogs)
                self._heed_model_stop()  # Keras stops after this batch
            if self.progress.due():
                self.progress.batch(i + 1, "  ".join(
                    f"{k}: {v.item() / seen:.4f}" for k, v in (("loss", loss_sum), *hits.items())))
            if i + 1 >= steps or self.diverged or self.stop_training:
                break
        if self.parallel is not None:  # the epoch's figures over every rank's samples
            loss_sum, *sums, seen = self.parallel.sum(loss_sum, *hits.values(), torch.tensor(seen))
            hits = dict(zip(hits, sums))
        if int(seen) == 0:
            raise CnnkitError("the training data gave no batches")
        logs = {"loss": loss_sum.item() / int(seen)}
        logs.update({k: v.item() / int(seen) for k, v in hits.items()})
        return lr, logs

    def _diverge(self, epoch: int, loss: float) -> None:
        from cnnkit.train.resume import roll_back

        roll_back(self, epoch, loss)

    # --- evaluation (cnnkit.train.evaluation) -------------------------------------------------
    def _batched_logits(self, x, max_batches: int | None = None):
        return batched_logits(self, x, max_batches)

    def _evaluate(self, x, y, max_batches=None) -> dict:
        if self.parallel is not None:  # each rank its batches, summed exactly
            return self.parallel.evaluate(self, x, y, max_batches)
        return evaluate_batches(self, x, y, max_batches)

    def evaluate(self, x, y=None) -> dict:
        """{'loss', 'accuracy'} (or the objective's metrics) over all of (x, y), like Keras's
        evaluate; `x` may be a loader of (x, labels) batches."""
        x, y = self._check_data(x, y, "evaluation data")
        if self.loss_fn is None:
            self._setup_loss(x, [y])
        return self._evaluate(x, y)

    def predict_logits(self, x) -> torch.Tensor:
        """Logits (N, K) float32 on the CPU for uint8 images (N, H, W, C), float arrays (the
        Keras path), or a loader's batches."""
        if not is_loader(x):
            x = as_inputs(x, "images", floats=self.objective is not None)
        return torch.cat([logits.cpu() for _, logits in self._batched_logits(x)])

    # --- exact resume --------------------------------------------------------------------------
    def save_state(self, directory) -> Path:
        """Weights, optimizer, schedule, history, callbacks' state: safetensors + JSON, atomic."""
        from cnnkit.train.resume import trainer_state

        return write_state(directory, self.model.net.state_dict(), trainer_state(self))

    @staticmethod
    def saved_config(directory) -> TrainConfig:
        """The TrainConfig a state directory was written with (to rebuild its Trainer)."""
        return TrainConfig.from_dict(read_state(directory)[1]["config"])

    def load_state(self, directory) -> "Trainer":
        """Restore a state written by `save_state`; the next `fit` continues after its epoch.
        This trainer must hold the same model architecture, config and callbacks."""
        from cnnkit.train.resume import restore_state

        restore_state(self, directory)
        return self
