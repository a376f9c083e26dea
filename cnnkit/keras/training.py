"""Keras's fit / evaluate / predict for cnnkit.keras models: an adapter over cnnkit's one
training loop (cnnkit.train.trainer.Trainer).

Keras's argument handling and return values are here: arrays are used as given (float32; raw
0-255 pixels train as raw pixels, as in Keras) and need their batch axis; `validation_split`
takes the last fraction before shuffling; a generator (`ImageDataGenerator().flow(...)`, or
any iterator of (x, y) batches) feeds `steps_per_epoch` batches per epoch; evaluate returns
the loss, [loss, *metrics] or a dict; predict returns numpy. The loop itself is the Trainer's,
run with the compiled loss, metrics and optimizer (an Objective): channels_last, cnnkit's
kernels, the thread policy, seeded shuffles, the same callbacks (cnnkit.train.callbacks).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.keras import mixed_precision
from cnnkit.keras.losses import check_class_weight, correct, sample_weights
from cnnkit.keras.models import FIT_ARGS, _unknown
from cnnkit.train.callbacks import Callback
from cnnkit.train.config import LOSSES, OPTIMIZERS, TrainConfig
from cnnkit.train.feeds import model_input
from cnnkit.train.progress import keras_line
from cnnkit.train.trainer import Objective, Trainer

# -- data ---------------------------------------------------------------------------------------
def images(model, x, what="x") -> torch.Tensor:
    """float32 (N, H, W, C) as given, checked against the model's input shape."""
    if isinstance(x, (list, tuple)) and len(x) == 1:
        x = x[0]
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(np.asarray(x), dtype=np.float32))
    t = t.float()
    if model.input_shape is None:  # Keras builds a model without Input on its first data
        model.set_input_shape(tuple(t.shape[1:]))
    shape = tuple(model.input_shape)
    if t.dim() == len(shape) and shape[-1] == 1 and tuple(t.shape[1:]) == shape[:-1]:
        t = t.unsqueeze(-1)  # grayscale images without their channel axis: (N, 28, 28)
    if tuple(t.shape) == shape:
        raise CnnkitError(f"{what} has shape {tuple(t.shape)}: one image without its batch "
                          f"axis; the model takes a batch (N, {', '.join(map(str, shape))}): "
                          f"pass np.expand_dims({what}, 0) or {what}[None] (or slice, "
                          f"{what}[0:1], as seed 002 does)")
    if tuple(t.shape[1:]) != shape:
        raise CnnkitError(f"{what} has shape {tuple(t.shape)}; the model expects (N, "
                          f"{', '.join(map(str, shape))})")
    return t


def targets(y, n, what="y") -> torch.Tensor:
    t = y.detach().cpu() if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
    if len(t) != n:
        raise CnnkitError(f"{what} has {len(t)} labels for {n} images")
    return t.float() if t.is_floating_point() else t.long()


def nchw(xb: torch.Tensor) -> torch.Tensor:
    # images (B, H, W, C) -> (B, C, H, W), channels_last in memory; vectors as they are
    return xb.permute(0, 3, 1, 2) if xb.dim() == 4 else xb


def _is_generator(x) -> bool:
    # an iterator, a Keras Sequence, or a dataset of batches (image_dataset_from_directory)
    return hasattr(x, "__next__") or (
        (hasattr(x, "__getitem__") or hasattr(x, "__iter__")) and hasattr(x, "__len__")
        and not isinstance(x, (np.ndarray, torch.Tensor, list, tuple, dict, str)))



# -- the loop -----------------------------------------------------------------------------------
def _batch_size(value):
    if value is None:
        return 32
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CnnkitError(f"batch_size={value!r} is out of range; valid: an integer >= 1")
    return value


def _verbosity(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise CnnkitError(f"verbose={verbose!r} is out of range; valid: 'auto', 0, 1, 2")
    return verbose


RAW_PIXELS = {"normalize": "standardize", "mean": [0.0], "std": [1 / 255]}


def pixel_scale(xb) -> dict:
    """How this model's inputs relate to 8-bit pixels, saved with it for cnnkit's tools
    (`cnnkit.load`, predict, serve, export feed uint8 images through it): values past 1 mean it
    trains on raw 0-255 pixels, recorded as (x / 255 - 0) / (1 / 255) = x; else pixels / 255."""
    return dict(RAW_PIXELS) if float(xb.max()) > 1.0 else {"normalize": "unit"}



# -- the adapter: Keras's arguments in, Keras's return values out, cnnkit's Trainer inside ----
class GeneratorBatches:
    """A loader (cnnkit.train.feeds) over a generator of (x, y) batches, such as
    `ImageDataGenerator().flow(...)`: `steps` batches per epoch, read on from where the last
    epoch stopped, as Keras does; a dataset (`utils.image_dataset_from_directory`, anything
    iterable with a length) is passed over again when a pass ends. The first batch is read at once: it builds a model that has
    no Input yet, and the trainer's thread probe times its steps on it (`x`, `y`)."""

    def __init__(self, model, gen, steps, what):
        self.model, self.what, self.source = model, what, gen
        self.iterator = gen if hasattr(gen, "__next__") else iter(gen)
        if steps is None and not hasattr(gen, "__len__"):
            raise CnnkitError(f"{what} is a generator without a length; pass steps_per_epoch "
                              "(or steps / validation_steps)")
        self.steps = len(gen) if steps is None else steps
        self.first = self._next()
        self.x, self.y = self.first

    def _next(self):
        try:
            batch = next(self.iterator)
        except StopIteration:
            if self.iterator is self.source:
                raise
            # a dataset (not an iterator) is passed over again, in its next order, as Keras
            # starts each epoch on a tf.data.Dataset
            self.iterator = iter(self.source)
            batch = next(self.iterator)
        xb, yb = (batch[0], batch[1]) if isinstance(batch, tuple) and len(batch) > 1 else (batch, None)
        xb = images(self.model, xb, self.what)
        return xb, None if yb is None else targets(yb, len(xb))

    def set_epoch(self, epoch):
        pass  # a generator's order is its own

    def __len__(self):
        return self.steps

    def batches(self):
        """This epoch's (float images (B, H, W, C), targets or None)."""
        for _ in range(self.steps):
            batch, self.first = self.first or self._next(), None
            yield batch

    def __iter__(self):
        for xb, yb in self.batches():
            if yb is None:
                raise CnnkitError(f"{self.what} gave images without labels: yield (x, y) batches")
            yield model_input(xb, {}), yb


def _source(model, x, y, steps, what):
    """A generator as a loader; arrays as (float images, targets), checked."""
    if _is_generator(x):
        if y is not None:
            raise CnnkitError(f"{what} is a generator of (images, labels): pass y=None")
        return GeneratorBatches(model, x, steps, what), None
    if x is None:
        raise CnnkitError(f"{what} is missing: pass images (N, H, W, C) and labels")
    if y is None:
        raise CnnkitError(f"labels are missing: pass {what} with its labels y")
    xt = images(model, x, what)
    return xt, targets(y, len(xt))


def _objective(model, train=True, class_weight=None):
    """cnnkit's Trainer runs the compiled loss, metrics and optimizer (`train=False`: none);
    `class_weight` weighs the training batches' loss only, as Keras's fit does."""
    c = model.require_compiled("fit" if train else "evaluate")
    act = model.net.output_activation
    weighted = None if class_weight is None else (
        lambda logits, y: c.loss.compute(logits, act, y, sample_weights(y, class_weight)))
    return Objective(optimizer=c.optimizer.build if train else (lambda params: None),
                     loss=lambda logits, y: c.loss.compute(logits, act, y), train_loss=weighted,
                     metrics={name: lambda logits, y, kind=kind: correct(kind, logits, act, y)
                              for name, kind in c.metrics},
                     hparams={"optimizer": c.optimizer.name, "loss": c.loss.name})


def _trainer(model, objective, callbacks=(), seed=None, **settings) -> Trainer:
    # Keras trains in float32, and so does its path here (weights match real Keras's), unless
    # mixed_precision.set_global_policy asks for bf16 or fp16. The seed comes from torch's
    # generator, so keras.utils.set_random_seed fixes shuffles and dropout as in Keras.
    if seed is None:
        seed = int(torch.randint(0, 2**31, ()).item())
    config = TrainConfig(precision=mixed_precision.precision(), seed=seed, **settings)
    return Trainer(model, config, callbacks, objective=objective)


# fit and evaluate are cnnkit.keras.models.Sequential's methods, signatures included
def fit(model, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
        steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
        validation_freq=1, **kwargs):
    if kwargs.pop("sample_weight", None) is not None:
        raise CnnkitError("fit(): sample_weight is not supported yet; class_weight is")
    class_weight = kwargs.pop("class_weight", None)
    if class_weight is not None:
        class_weight = check_class_weight(class_weight)
    _unknown("fit", kwargs, FIT_ARGS)
    c = model.require_compiled("fit")
    verbose, batch_size = _verbosity(verbose), _batch_size(batch_size)
    if validation_split and validation_data is None:
        if _is_generator(x):
            raise CnnkitError("validation_split is for arrays; with a generator pass "
                              "validation_data (e.g. a flow with subset='validation')")
        if not 0 < validation_split < 1:
            raise CnnkitError(f"validation_split={validation_split!r} is out of range; valid: 0 < x < 1")
        cut = int(len(x) * (1 - validation_split))  # Keras: the last fraction, before shuffling
        x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
    xt, yt = _source(model, x, y, steps_per_epoch, "x")
    xv = yv = None
    if validation_data is not None:
        if _is_generator(validation_data):
            xv, yv = _source(model, validation_data, None, validation_steps, "validation_data")
        elif not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise CnnkitError("validation_data must be (x_val, y_val) or a generator")
        else:
            xv, yv = _source(model, validation_data[0], validation_data[1], None, "validation x")
            if validation_steps is not None:
                cut = validation_steps * _batch_size(validation_batch_size or batch_size)
                xv, yv = xv[:cut], yv[:cut]
    for cb in callbacks or []:
        if not isinstance(cb, Callback):
            raise CnnkitError(f"callbacks take cnnkit.keras.callbacks objects; received "
                              f"{type(cb).__name__}")
    first = xt.x if isinstance(xt, GeneratorBatches) else xt
    model.preprocessing = pixel_scale(first)  # before any checkpoint saves the model
    trainer = _trainer(model, _objective(model, class_weight=class_weight),
                       list(callbacks or []), epochs=epochs,
                       batch_size=batch_size, verbose=verbose,
                       eval_batch_size=_batch_size(validation_batch_size or batch_size),
                       **_config_names(c))
    trainer.shuffle = bool(shuffle)
    history = trainer.fit(xt, yt, xv, yv, initial_epoch=initial_epoch or None,
                          validation_freq=validation_freq, steps_per_epoch=steps_per_epoch)
    model.net.eval()
    model.history = history
    return history


def _config_names(c) -> dict:
    """The compiled choices in TrainConfig's words, where it has them (the saved state's
    config, the thread probe's optimizer)."""
    out = {"lr": c.optimizer.learning_rate}
    if c.optimizer.name in OPTIMIZERS:
        out["optimizer"] = c.optimizer.name
    if c.loss.name in LOSSES:
        out["loss"] = c.loss.name
    return out


def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", steps=None,
             return_dict=False, *, sample_weight=None, callbacks=None, **kwargs):
    if sample_weight is not None:
        raise CnnkitError("evaluate(): sample_weight is not supported yet")
    _unknown("evaluate", kwargs, ("x", "y", "batch_size", "verbose", "steps", "return_dict"))
    c = model.require_compiled("evaluate")
    verbose, batch_size = _verbosity(verbose), _batch_size(batch_size)
    t0 = time.perf_counter()
    xs, ys = _source(model, x, y, steps, "x")
    if steps is not None and ys is not None:
        xs, ys = xs[:steps * batch_size], ys[:steps * batch_size]
    trainer = _trainer(model, _objective(model, train=False), seed=0, verbose=0,
                       eval_batch_size=batch_size)
    scores = trainer.evaluate(xs, ys)
    if verbose:
        n = len(xs) if ys is None else -(-len(xs) // batch_size)
        print(keras_line(n, time.perf_counter() - t0, scores, verbose), flush=True)
    if return_dict:
        return scores
    if not c.metrics:
        return scores["loss"]
    return [scores["loss"]] + [scores[name] for name, _ in c.metrics]


@torch.no_grad()
def predict(model, x, *, batch_size, verbose, steps, layers=None):
    """The model's outputs (its last activation applied), numpy; with `layers`, a list of
    those layers' outputs (Keras's layout: (N, H, W, C) or (N, D)). Under a mixed precision
    policy the layers compute in bf16 or fp16, as Keras's do (3x the images/s of float32 for
    MobileNetV2 on a CPU with bf16 math, bench/README.md); the arrays returned are float32."""
    from cnnkit.train.device import autocast

    batch_size = _batch_size(batch_size)
    if _is_generator(x):
        batches = (xb for xb, _ in GeneratorBatches(model, x, steps, "x").batches())
    else:
        xt = images(model, x)
        stop = len(xt) if steps is None else min(len(xt), steps * batch_size)
        batches = (xt[i:i + batch_size] for i in range(0, stop, batch_size))
    model.net.eval()
    device = next(model.net.parameters(), torch.empty(0)).device
    parts = []
    for xb in batches:
        with autocast(device.type, mixed_precision.precision()):
            if layers is None:
                parts.append([model.net.outputs(model.net(nchw(xb)))])
            else:
                parts.append(_layer_outputs(model, nchw(xb), layers))
    if not parts:
        raise CnnkitError("predict received no images")
    out = [_keras_layout(torch.cat([p[i] for p in parts])) for i in range(len(parts[0]))]
    if verbose and _verbosity(verbose):
        print(f"{len(parts)}/{len(parts)} ━━━━━━━━━━━━━━━━━━━━")
    return out[0] if layers is None else out


def _keras_layout(t):
    t = t.float() if t.is_floating_point() else t  # bf16 has no numpy dtype
    return (t.permute(0, 2, 3, 1) if t.dim() == 4 else t).contiguous().numpy()


def _layer_outputs(model, x, wanted):
    """Each wanted layer's output, its activation applied (cnnkit.look.inside's layer outputs)."""
    from cnnkit.look.inside import layer_outputs

    outs, _ = layer_outputs(model, x, keep=set(wanted))
    return [outs[name] for name in wanted]
