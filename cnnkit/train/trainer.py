"""The fit loop: Keras's `fit` / `evaluate` semantics, built for CPU speed and exact resume.

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

import contextlib
import math
import os
import time
from pathlib import Path

import torch

from cnnkit.data.augment import Augmenter
from cnnkit.train.averaging import WeightAverage
from cnnkit.data.batches import BatchLoader, channel_stats, epoch_generator, to_model_input
from cnnkit.data.rows import is_images, take
from cnnkit.errors import CnnkitError
from cnnkit.model.saving import load_state as load_weights  # reads old positional files too
from cnnkit.train.callbacks import Callback
from cnnkit.train.config import TrainConfig
from cnnkit.train.losses import correct_count, make_loss
from cnnkit.train.memory import keep_freed_memory
from cnnkit.train.optim import make_optimizer, make_schedule
from cnnkit.train.precise_bn import recomputed_note, settle_norms
from cnnkit.train.progress import Progress
from cnnkit.train.device import cpu_has_bf16, resolve_device, resolve_precision  # noqa: F401
from cnnkit.train.state import read_state, write_state

__all__ = ["TrainConfig", "Trainer", "History", "resolve_device", "resolve_precision"]
DROPOUT_STREAM = 2  # epoch_generator streams: 0 shuffle, 1 augmentation (BatchLoader), 2 dropout
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
EVAL_INPUT_BYTES = 32 << 20  # float input per evaluation batch, at most


class History:
    """As Keras's: `.history` maps each logged name to its list of per-epoch values."""

    def __init__(self, history: dict | None = None, epoch: list | None = None):
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.epoch: list[int] = list(epoch or [])

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def to_dict(self) -> dict:
        return {"history": self.history, "epoch": self.epoch}


def _as_images(x, what: str) -> torch.Tensor:
    if not is_images(x):
        x = torch.as_tensor(x)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise CnnkitError(f"{what} must be uint8 images (N, H, W, C); got {x.dtype} "
                          f"{tuple(x.shape)}")
    return take(x)  # a memory-mapped set stays on disk, gathered a batch at a time


def _as_labels(y, n: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or len(y) != n or y.is_floating_point():
        raise CnnkitError(f"{what} must be {n} integer class ids (N,); got {y.dtype} "
                          f"{tuple(y.shape)}")
    return y.long()


class Trainer:
    """Trains `model` (see the model contract: `.net` returns logits) with `config`.

    >>> history = Trainer(model, TrainConfig(epochs=5, batch_size=100, seed=1)).fit(x, y, xv, yv)

    `state_dir`: where the complete training state is written (atomically) after every epoch;
    `Trainer(same model, same config).load_state(state_dir).fit(...)` then continues exactly.
    `governed=True` (cnnkit.run passes it): the run may set process-wide things, the thread
    governor's count (`threads` auto) and glibc's malloc thresholds (cnnkit.train.memory);
    otherwise (a notebook's fit) they stay the caller's, unless `config.threads` asks.
    """

    def __init__(self, model, config: TrainConfig | None = None,
                 callbacks: list[Callback] = (), state_dir=None, stream=None, parallel=None,
                 governed: bool = False):
        self.model, self.config = model, config or TrainConfig()
        cfg = self.config
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
        from cnnkit.train.optimizers import trained_parameters  # layers' `trainable` flags

        self.optimizer = make_optimizer(cfg.optimizer, trained_parameters(model), cfg.lr,
                                        cfg.momentum, cfg.nesterov, cfg.weight_decay,
                                        cfg.optimizer_options)
        self.schedule = None  # built by fit, once the number of batches is known
        self._schedule_state = None  # loaded before the schedule exists
        self.history = History()
        self.epoch = 0  # epochs completed
        self.stop_training, self.stop_reason, self.diverged = False, None, False
        self.precise_bn = None  # {"images", "steps"} once batch-norm statistics are recomputed
        self.progress = Progress(cfg.verbose, cfg.epochs, stream)
        self.loss_fn = None
        self.preprocessing = {"normalize": cfg.normalize, "mean": None, "std": None}
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
        if self.precision in AUTOCAST_DTYPES:
            return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])
        return contextlib.nullcontext()

    def _penalty(self):
        fn = getattr(self.model, "l2_penalty", None)
        return fn() if fn is not None else 0.0

    def _check_data(self, x, y, what: str):
        x = _as_images(x, what)
        y = _as_labels(y, len(x), f"labels of {what}")
        if getattr(self.model, "foreign", False) and self.model.input_shape is None:
            # a user's own module (cnnkit.train.module) takes the shape of its first data
            self.model.input_shape = tuple(x.shape[1:])
        expected = tuple(self.model.input_shape)
        if tuple(x.shape[1:]) != expected:
            h, w, c = x.shape[1:]
            raise CnnkitError(f"{what} images are {h}x{w}x{c} but the model expects "
                              f"{'x'.join(map(str, expected))} (H x W x C)")
        if len(x) == 0:
            raise CnnkitError(f"{what} is empty")
        return x, y

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
        self.loss_fn = make_loss(self.config.loss, k, self.model.net.output_activation,
                                 self.config.label_smoothing)

    def preprocessing_record(self) -> dict:
        """How pixels become the network's input, as saved in model.json: evaluate and predict
        must scale a saved model's images exactly as its training did."""
        p = self.preprocessing
        if p["normalize"] != "standardize" or p["mean"] is None:
            return {"normalize": p["normalize"]}
        return {"normalize": "standardize", "mean": p["mean"].cpu().tolist(),
                "std": p["std"].cpu().tolist()}

    def _input(self, xb: torch.Tensor) -> torch.Tensor:
        p = self.preprocessing
        if p["normalize"] == "standardize" and p["mean"] is None:
            raise CnnkitError("normalize='standardize' needs the training set's mean and std: "
                              "fit first, or set trainer.preprocessing['mean'/'std']")
        return to_model_input(xb, p["normalize"], p["mean"], p["std"])

    # --- training ------------------------------------------------------------------------------
    def _train_step(self, xb, yb, weight: float = 1.0):
        """`weight`: this rank's share of the global batch (cnnkit.distributed.shard)."""
        with self._autocast():
            logits = self._train_forward(xb)  # (B, K)
        # a rank whose part of a last, tiny global batch is empty still joins the all-reduce
        loss = self.loss_fn(logits, yb) + self._penalty() if len(yb) else logits.sum() * 0.0
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

    def fit(self, x_train, y_train, x_val=None, y_val=None, initial_epoch: int | None = None
            ) -> History:
        """Train until `config.epochs` (counting from `initial_epoch`, default: the epochs
        already done, so a loaded state continues). Returns the History."""
        cfg, net = self.config, self.model.net
        x_train, y_train = self._check_data(x_train, y_train, "training data")
        has_val = x_val is not None
        if has_val:
            x_val, y_val = self._check_data(x_val, y_val, "validation data")
        if cfg.normalize == "standardize":  # this training set's statistics
            mean, std = channel_stats(x_train)
            self.preprocessing.update(mean=mean.to(self.device), std=std.to(self.device))
        self.model.preprocessing = self.preprocessing_record()  # saved with the model
        self._setup_loss(x_train, [y_train] + ([y_val] if has_val else []))
        # for callbacks that look at the data (TensorBoard's images): references, not copies
        self.train_data = (x_train, y_train)
        self.validation_data = (x_val, y_val) if has_val else None
        loader = BatchLoader(x_train.to(self.device), y_train.to(self.device), cfg.batch_size,
                             shuffle=True, seed=self.seed,
                             augment=Augmenter(**cfg.augment) if cfg.augment else None,
                             normalize=cfg.normalize, mean=self.preprocessing["mean"],
                             std=self.preprocessing["std"], device=self.device)
        par = self.parallel
        if par is not None:  # this rank's part of every global batch
            loader = par.shard(loader)
        steps = 1 if cfg.dry_run else len(loader)
        from cnnkit.train.optimizers import frozen_norms

        frozen = frozen_norms(self.model)  # in inference mode while the rest trains
        if self.schedule is None:
            self.schedule = make_schedule(cfg.schedule, self.optimizer, cfg.epochs, steps,
                                          step_size=cfg.step_size, gamma=cfg.gamma)
            if par is not None:
                par.scale_schedule(self.schedule, steps)  # scale_lr="linear", with warm-up
            if self._schedule_state is not None:
                self.schedule.load_state_dict(self._schedule_state)
        start = self.epoch if initial_epoch is None else int(initial_epoch)
        metrics = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if has_val else [])
        batch_callbacks = [cb for cb in self.callbacks
                           if type(cb).on_batch_end is not Callback.on_batch_end]
        for cb in self.callbacks:
            cb.trainer = self
        for cb in self.callbacks:
            cb.on_train_begin({"metrics": metrics + ["lr", "time"]})
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
            if self.average is not None:
                self.average.use_own()  # train the network's own weights
            net.train()
            for norm in frozen:  # Keras: a frozen BatchNormalization keeps its statistics
                norm.eval()
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            seen = 0
            t_step = time.perf_counter()
            for i, (xb, yb) in enumerate(loader):
                lr = self.schedule.lr  # the rate this batch uses
                loss, logits = self._train_step(xb, yb, getattr(loader, "weight", 1.0))
                self.threads.step(time.perf_counter() - t_step, len(yb), epoch, i)
                t_step = time.perf_counter()
                loss_sum += loss * len(yb)
                correct += correct_count(logits, yb)
                seen += len(yb)
                if batch_callbacks:
                    blogs = {"loss": loss.item(), "size": len(yb)}
                    for cb in batch_callbacks:
                        cb.on_batch_end(i, blogs)
                if self.progress.due():
                    self.progress.batch(i + 1, f"loss: {loss_sum.item() / seen:.4f}  "
                                               f"accuracy: {correct.item() / seen:.4f}")
                if i + 1 >= steps or self.diverged:
                    break
            if par is not None:  # the epoch's figures over every rank's samples
                loss_sum, correct, seen = par.sum(loss_sum, correct, torch.tensor(seen))
                seen = int(seen)
            logs = {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen}
            if not math.isfinite(logs["loss"]):
                self._diverge(epoch, logs["loss"])
                break
            if self.average is not None:
                self.average.use_average()  # validation, callbacks and checkpoints see these
            self.precise_bn = settle_norms(self, x_train, frozen, (epoch + 1) * steps) \
                or self.precise_bn  # short runs: batch-norm statistics recomputed
            if has_val:
                val = self._evaluate(x_val, y_val, max_batches=1 if cfg.dry_run else None)
                logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            logs.update(lr=lr, time=time.perf_counter() - t0)
            self.history.append(epoch, logs)
            self.epoch = epoch + 1
            self.progress.epoch_end(epoch, logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
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

    def _diverge(self, epoch: int, loss: float) -> None:
        """A NaN/inf loss: end the run without a checkpoint or state for this epoch, and put the
        last good weights back (from the saved state) so the model in memory stays usable."""
        self.diverged = self.stop_training = True
        self.progress.abort()
        if not self.stop_reason:
            self.stop_reason = (f"the loss became {loss} in epoch {epoch + 1}; training stopped "
                                "(lower the learning rate, or clip gradients with clip_norm)")
        self.epoch = epoch
        if self.state_dir is not None and Path(self.state_dir).is_dir():
            weights, state = read_state(self.state_dir)
            load_weights(self.model.net, weights, str(self.state_dir))
            if self.average is not None:
                self.average.load_state_dict(state["weight_average"])
            self.stop_reason += f"; the model is back at the end of epoch {epoch}"

    # --- evaluation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _batched_logits(self, x: torch.Tensor, max_batches: int | None = None):
        net = self.model.net
        was_training = net.training
        net.eval()
        try:
            # large images: at most EVAL_INPUT_BYTES of float input at once (a 512x512 RGB
            # batch of 128 would be 400 MB), so evaluation fits where training did
            per_image = 4 * max(1, x[0].numel() if len(x) else 1)
            bs = max(1, min(self.config.eval_batch_size, EVAL_INPUT_BYTES // per_image))
            for i, start in enumerate(range(0, len(x), bs)):
                if max_batches is not None and i >= max_batches:
                    break
                xb = self._input(x[start:start + bs].to(self.device, non_blocking=True))
                # fp32 even where training runs in bf16: validation, the run's test score,
                # `cnnkit evaluate` and `model.predict` must give one answer for one image
                yield start, self._forward(xb).float()  # (B, K)
        finally:
            net.train(was_training)

    def _evaluate(self, x, y, max_batches=None) -> dict:
        if self.parallel is not None:  # each rank its batches, summed exactly
            return self.parallel.evaluate(self, x, y, max_batches)
        y = y.to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        for start, logits in self._batched_logits(x, max_batches):
            yb = y[start:start + len(logits)]
            loss_sum += self.loss_fn(logits, yb) * len(yb)
            correct += correct_count(logits, yb)
            seen += len(yb)
        with torch.inference_mode():
            penalty = float(self._penalty())
        return {"loss": loss_sum.item() / seen + penalty, "accuracy": correct.item() / seen}

    def evaluate(self, x, y) -> dict:
        """{'loss', 'accuracy'} over all of (x, y), like Keras's evaluate."""
        x, y = self._check_data(x, y, "evaluation data")
        self._setup_loss(x, [y])
        return self._evaluate(x, y)

    def predict_logits(self, x) -> torch.Tensor:
        """Logits (N, K) float32 on the CPU for uint8 images (N, H, W, C)."""
        x = _as_images(x, "images")
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
