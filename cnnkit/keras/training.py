"""Keras's fit / evaluate / predict for cnnkit.keras models, with Keras's semantics.

Arrays are used as given (float32; raw 0-255 pixels train as raw pixels, as in Keras), and
need their batch axis; `validation_split` takes the last fraction before shuffling; a
generator (`ImageDataGenerator().flow(...)`, or any iterator of (x, y) batches) feeds
`steps_per_epoch` batches per epoch. The step itself is cnnkit's: channels_last network,
losses from logits (cnnkit.keras.losses), torch kernels for the optimizers.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.keras.callbacks import History
from cnnkit.keras.losses import correct


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
    if tuple(t.shape) == shape:
        raise CnnkitError(f"{what} has shape {tuple(t.shape)}: one image without its batch "
                          f"axis; the model takes a batch (N, {', '.join(map(str, shape))}): "
                          f"pass np.expand_dims({what}, 0) or {what}[None] (or slice, "
                          f"{what}[0:1], as seed 002 does)")
    if tuple(t.shape[1:]) != shape:
        fix = ""
        if t.dim() == len(shape) and shape[-1] == 1 and tuple(t.shape[1:]) == shape[:-1]:
            fix = f"; add the channel axis: {what}.reshape(-1, {', '.join(map(str, shape))})"
        raise CnnkitError(f"{what} has shape {tuple(t.shape)}; the model expects (N, "
                          f"{', '.join(map(str, shape))}){fix}")
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
    return hasattr(x, "__next__") or (hasattr(x, "__getitem__") and hasattr(x, "__len__")
                                      and not isinstance(x, (np.ndarray, torch.Tensor, list, tuple)))


class _ArrayBatches:
    def __init__(self, x, y, batch_size, shuffle):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle

    def __len__(self):
        return max(1, math.ceil(len(self.x) / self.batch_size))

    def epoch(self, steps=None):
        order = torch.randperm(len(self.x)) if self.shuffle else torch.arange(len(self.x))
        for i, start in enumerate(range(0, len(self.x), self.batch_size)):
            if steps is not None and i >= steps:
                return
            idx = order[start:start + self.batch_size]
            yield self.x[idx], None if self.y is None else self.y[idx]


class _GeneratorBatches:
    def __init__(self, model, gen, what):
        self.model, self.gen, self.what = model, gen, what
        self.iterator = gen if hasattr(gen, "__next__") else iter(gen)

    def __len__(self):
        if hasattr(self.gen, "__len__"):
            return len(self.gen)
        raise CnnkitError(f"{self.what} is a generator without a length; pass steps_per_epoch "
                          "(or steps / validation_steps)")

    def epoch(self, steps=None):
        for _ in range(len(self) if steps is None else steps):
            batch = next(self.iterator)
            xb, yb = (batch[0], batch[1]) if isinstance(batch, tuple) and len(batch) > 1 else (batch, None)
            xb = images(self.model, xb, self.what)
            yield xb, None if yb is None else targets(yb, len(xb))


def batches(model, x, y, batch_size, shuffle, what="x"):
    if _is_generator(x):
        if y is not None:
            raise CnnkitError(f"{what} is a generator of (images, labels): pass y=None")
        return _GeneratorBatches(model, x, what)
    if x is None:
        raise CnnkitError(f"{what} is missing: pass images (N, H, W, C) and labels")
    xt = images(model, x, what)
    return _ArrayBatches(xt, None if y is None else targets(y, len(xt)), batch_size, shuffle)


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


def _step(model, xb, yb):
    c = model.compiled_state
    logits = model.net(nchw(xb))  # (B, K)
    loss = c.loss.compute(logits, model.net.output_activation, yb) + model.penalty()
    return loss, logits


def _frozen_modules(model):
    """Keras: a non-trainable layer's weights stay as they are, and a non-trainable
    BatchNormalization runs in inference mode (its moving statistics unchanged)."""
    frozen = []
    for layer, name in zip(model.layers, model.layer_names()):
        module = model.net.layers[name]
        trainable = getattr(layer, "trainable", True) and model.trainable
        for p in module.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            frozen.append(module)
    return frozen


def fit(model, x, y, *, batch_size, epochs, verbose, callbacks, validation_split,
        validation_data, shuffle, initial_epoch, steps_per_epoch, validation_steps,
        validation_batch_size, validation_freq):
    c = model.require_compiled("fit")
    verbose, batch_size = _verbosity(verbose), _batch_size(batch_size)
    if validation_split and validation_data is None:
        if _is_generator(x):
            raise CnnkitError("validation_split is for arrays; with a generator pass "
                              "validation_data (e.g. a flow with subset='validation')")
        if not 0 < validation_split < 1:
            raise CnnkitError(f"validation_split={validation_split!r} is out of range; valid: 0 < x < 1")
        n = len(x)
        cut = int(n * (1 - validation_split))  # Keras: the last fraction, before shuffling
        x, xv = x[:cut], x[cut:]
        y, yv = y[:cut], y[cut:]
        validation_data = (xv, yv)
    train = batches(model, x, y, batch_size, shuffle)
    if isinstance(train, _ArrayBatches) and train.y is None:
        raise CnnkitError("fit needs labels: fit(x, y, ...)")
    val = None
    if validation_data is not None:
        if _is_generator(validation_data):
            val = batches(model, validation_data, None, 0, False, "validation_data")
        else:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise CnnkitError("validation_data must be (x_val, y_val) or a generator")
            val = batches(model, validation_data[0], validation_data[1],
                          _batch_size(validation_batch_size or batch_size), False, "validation x")
    steps = steps_per_epoch or len(train)
    optimizer = c.optimizer.build(model.net.parameters())
    history = History()
    cbs = list(callbacks or []) + [history]  # History last, as in Keras: it logs what callbacks leave
    for cb in cbs:
        if not hasattr(cb, "set_model"):
            raise CnnkitError(f"callbacks take cnnkit.keras.callbacks objects; received "
                              f"{type(cb).__name__}")
        cb.set_model(model)
        cb.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin({})
    for epoch in range(initial_epoch, epochs):
        for cb in cbs:
            cb.on_epoch_begin(epoch, {})
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}")
        t0 = time.perf_counter()
        model.net.train()
        for module in _frozen_modules(model):
            module.eval()
        loss_sum, seen = torch.zeros(()), 0
        hits = {name: torch.zeros(()) for name, _ in c.metrics}
        for i, (xb, yb) in enumerate(train.epoch(steps)):
            if epoch == initial_epoch and i == 0:
                model.preprocessing = pixel_scale(xb)
            for cb in cbs:
                cb.on_train_batch_begin(i, {})
            loss, logits = _step(model, xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.optimizer.clipnorm:
                torch.nn.utils.clip_grad_norm_(model.net.parameters(), c.optimizer.clipnorm)
            optimizer.step()
            n = len(xb)
            loss_sum += loss.detach() * n
            seen += n
            with torch.no_grad():
                for name, kind in c.metrics:
                    hits[name] += correct(kind, logits, model.net.output_activation, yb)
            blogs = {"loss": loss.item()} if len(cbs) > 1 else {}
            for cb in cbs[:-1]:
                cb.on_train_batch_end(i, blogs)
            if model.stop_training:
                break
        if seen == 0:
            raise CnnkitError("the training data gave no batches")
        logs = {name: float(hits[name]) / seen for name, _ in c.metrics}
        logs["loss"] = float(loss_sum) / seen
        if val is not None and (epoch + 1) % validation_freq == 0:
            scores = _scores(model, val, validation_steps)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        if verbose:
            _print_line(steps, time.perf_counter() - t0, logs, verbose)
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.net.eval()
    for cb in cbs:
        cb.on_train_end({})
    model.history = history
    return history


RAW_PIXELS = {"normalize": "standardize", "mean": [0.0], "std": [1 / 255]}


def pixel_scale(xb) -> dict:
    """How this model's inputs relate to 8-bit pixels, saved with it for cnnkit's tools
    (`cnnkit.load`, predict, serve, export feed uint8 images through it): values past 1 mean it
    trains on raw 0-255 pixels, recorded as (x / 255 - 0) / (1 / 255) = x; else pixels / 255."""
    return dict(RAW_PIXELS) if float(xb.max()) > 1.0 else {"normalize": "unit"}


def _print_line(steps, seconds, logs, verbose):
    values = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
    per_step = f"{seconds / max(steps, 1) * 1000:.0f}ms/step"
    bar = "━" * 20 + " " if verbose == 1 else "- "
    print(f"{steps}/{steps} {bar}{seconds:.0f}s {per_step} - {values}")
    sys.stdout.flush()


@torch.no_grad()
def _scores(model, source, steps=None) -> dict:
    c = model.compiled_state
    model.net.eval()
    loss_sum, seen = 0.0, 0
    hits = {name: 0.0 for name, _ in c.metrics}
    for xb, yb in source.epoch(steps):
        if yb is None:
            raise CnnkitError("evaluate needs labels: evaluate(x, y)")
        logits = model.net(nchw(xb))
        loss_sum += float(c.loss.compute(logits, model.net.output_activation, yb)) * len(xb)
        seen += len(xb)
        for name, kind in c.metrics:
            hits[name] += float(correct(kind, logits, model.net.output_activation, yb))
    if seen == 0:
        raise CnnkitError("the evaluation data gave no batches")
    out = {name: hits[name] / seen for name, _ in c.metrics}
    out["loss"] = loss_sum / seen + float(model.penalty())
    return out


def evaluate(model, x, y, *, batch_size, verbose, steps, return_dict):
    c = model.require_compiled("evaluate")
    verbose = _verbosity(verbose)
    t0 = time.perf_counter()
    source = batches(model, x, y, _batch_size(batch_size), False)
    scores = _scores(model, source, steps)
    if verbose:
        _print_line(steps or len(source), time.perf_counter() - t0, scores, verbose)
    if return_dict:
        return scores
    if not c.metrics:
        return scores["loss"]
    return [scores["loss"]] + [scores[name] for name, _ in c.metrics]


@torch.no_grad()
def predict(model, x, *, batch_size, verbose, steps, layers=None):
    """The model's outputs (its last activation applied), numpy; with `layers`, a list of
    those layers' outputs (Keras's layout: (N, H, W, C) or (N, D))."""
    source = batches(model, x, None, _batch_size(batch_size), False)
    model.net.eval()
    parts = []
    for xb, _ in source.epoch(steps):
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
    return (t.permute(0, 2, 3, 1) if t.dim() == 4 else t).contiguous().numpy()


def _layer_outputs(model, x, wanted):
    """Each wanted layer's output, its activation applied (run layer by layer, so a conv's
    output is its own even where the network pools before the activation)."""
    net, outs = model.net, {}
    names = model.layer_names()
    for name in names:
        x = net.layers[name](x)
        if name in net.activations:
            x = net.activations[name](x)
        outs[name] = x
    outs[names[-1]] = net.outputs(x)
    return [outs[name] for name in wanted]
