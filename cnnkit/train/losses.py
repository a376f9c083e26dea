"""Losses by their Keras names: one registry and one math, for `cnnkit train`, RunSpec,
`Sequential.compile` and `cnnkit.keras` (whose loss classes adapt Keras's arguments to these).

The model returns logits and declares what its last layer was (`output_activation`). Keras users
write `Dense(10, activation='softmax')` with a cross-entropy loss; applying that softmax and then
a log would lose precision (and PyTorch's `cross_entropy` would apply a second softmax). So every
loss here starts from the logits and works in log space, applying the declared activation once:

    activation   cross-entropy reads                    mse/mae compare
    'softmax'    log_softmax(z)                         softmax(z)
    'sigmoid'    log of sigmoid(z) normalized to sum 1  sigmoid(z)
    None         z as logits: log_softmax(z)            softmax(z)
    'linear'     the outputs as probabilities (Keras's reading of a last layer without
                 activation and from_logits=False): normalized, clipped to [1e-7, 1 - 1e-7]

These are Keras's numbers on ordinary outputs (tests/keras compares); where a softmax or sigmoid
saturates, Keras clips the probability at 1e-7 and its loss stops at 16.1 with no gradient, while
the log-space form keeps both. Nothing here imports torch until a loss is computed:
cnnkit.train.config reads LOSSES for the command line.
"""
from __future__ import annotations

from cnnkit.errors import CnnkitError, one_of
from cnnkit.model import outputs

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", None)
LINEAR = "linear"  # outputs used as they are (cnnkit.keras, a layer without activation)
EPSILON = 1e-7  # Keras's clip of probabilities given as they are


# -- the math: (logits (B, K), activation, targets) -> a scalar ---------------------------------
def log_probs(logits, activation):
    """Log class probabilities (B, K) for what the model declares."""
    import torch
    import torch.nn.functional as F

    if activation == "sigmoid":  # Keras normalizes non-softmax outputs to sum to one
        log_p = F.logsigmoid(logits)
        return log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
    if activation == LINEAR:
        return torch.log((logits / logits.sum(dim=1, keepdim=True)).clamp(EPSILON, 1 - EPSILON))
    return F.log_softmax(logits, dim=1)


def predictions(logits, activation):
    """What the model outputs after its activation (for mse, mae, binary accuracy)."""
    if activation == "sigmoid":
        return logits.sigmoid()
    return logits if activation == LINEAR else logits.softmax(1)


def reduce(values, weights=None):
    """The batch's loss from per-image values (B,): their mean, or with per-image `weights`
    (B,) Keras's weighted mean, sum(w_i · l_i) / B (class_weight: not renormalized)."""
    return values.mean() if weights is None else (values * weights).mean()


def categorical(logits, activation, target, weights=None):
    """Cross-entropy against rows (B, K) of class probabilities (one-hot or soft)."""
    return reduce(-(target * log_probs(logits, activation)).sum(dim=1), weights)


def smooth(target, smoothing: float, k: int):
    """Keras's label smoothing of targets over `k` classes: y·(1 - s) + s/k (binary: k = 2)."""
    return target * (1.0 - smoothing) + smoothing / k if smoothing else target


def sparse_categorical(logits, activation, ids, smoothing: float = 0.0, weights=None):
    """Cross-entropy against class ids (B,), labels smoothed as `smooth` does; against rows
    of class probabilities (mixup's, CutMix's) as they are."""
    import torch.nn.functional as F

    if ids.is_floating_point():
        return categorical(logits, activation, ids, weights)
    if activation in ("softmax", None):  # PyTorch's fused kernel, the same math
        if weights is None:
            return F.cross_entropy(logits, ids, label_smoothing=smoothing)
        return reduce(F.cross_entropy(logits, ids, label_smoothing=smoothing,
                                      reduction="none"), weights)
    return categorical(logits, activation, one_hot(ids, logits.shape[1], smoothing), weights)


def binary(logits, activation, target, weights=None):
    """Keras's binary cross-entropy, the mean over every unit of every image; `target` has the
    logits' shape. A softmax's log(1 - p_k) is the log-sum-exp of the other units, exact."""
    import torch
    import torch.nn.functional as F

    if activation == "sigmoid" or (activation is None and logits.shape[1] == 1):
        if weights is None:
            return F.binary_cross_entropy_with_logits(logits, target)
        return reduce(F.binary_cross_entropy_with_logits(logits, target, reduction="none")
                      .mean(dim=1), weights)
    if activation == LINEAR:
        p = logits.clamp(EPSILON, 1 - EPSILON)
        return per_image(-(target * torch.log(p) + (1 - target) * torch.log(1 - p)), weights)
    if logits.shape[1] == 1:
        raise CnnkitError("binary_crossentropy on a 1-unit softmax output always predicts 1; "
                          "use activation='sigmoid' on the last layer")
    log_p = F.log_softmax(logits, dim=1)  # (B, K)
    others = logits.unsqueeze(1).repeat(1, logits.shape[1], 1)  # (B, K, K): row k without unit k
    others.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
    log_not_p = torch.logsumexp(others, dim=2) - torch.logsumexp(logits, dim=1, keepdim=True)
    return per_image(-(target * log_p + (1 - target) * log_not_p), weights)


def per_image(values, weights=None):
    """The mean of (B, K) values: over all of them, or each image's mean weighted (`reduce`)."""
    return values.mean() if weights is None else reduce(values.mean(dim=1), weights)


def squared_error(logits, activation, target, weights=None):
    return per_image((predictions(logits, activation) - target) ** 2, weights)


def absolute_error(logits, activation, target, weights=None):
    return per_image((predictions(logits, activation) - target).abs(), weights)


def one_hot(ids, k: int, smoothing: float = 0.0):
    """Rows (B, K) of class ids, smoothed; float rows (already mixed and smoothed) as they are."""
    import torch.nn.functional as F

    if ids.is_floating_point():
        return ids
    return smooth(F.one_hot(ids, k).float(), smoothing, k)


# -- the registry: the name, and the targets it takes from class ids -----------------------------
def _binary(logits, act, y, ls, weights=None):
    import torch.nn.functional as F

    if y.is_floating_point():  # rows (B, 2) of mixed, smoothed targets; 1 unit: class 1's
        return binary(logits, act, y[:, 1:] if logits.shape[1] == 1 else y, weights)
    target = y.float().unsqueeze(1) if logits.shape[1] == 1 else F.one_hot(y, 2).float()
    return binary(logits, act, smooth(target, ls, 2), weights)


def _rows(math):
    return lambda logits, act, y, ls, weights=None: math(
        logits, act, one_hot(y, logits.shape[1], ls), weights)


LOSSES = {  # name -> f(logits, activation, class ids or mixed rows (B, K), label smoothing,
          #          per-image weights)
    "sparse_categorical_crossentropy": sparse_categorical,
    "categorical_crossentropy": sparse_categorical,  # from class ids: the same as the sparse loss
    "binary_crossentropy": _binary,
    "mse": _rows(squared_error),
    "mae": _rows(absolute_error),
}

# Every other way Keras 3's `losses.get` spells these (its functions' and classes' names, exact
# case as Keras has it: `keras.losses.get("Sparse_Categorical_Crossentropy")` fails there too).
KERAS_SPELLINGS = {
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "BinaryCrossentropy": "binary_crossentropy",
    "mean_squared_error": "mse", "MeanSquaredError": "mse", "MSE": "mse",
    "mean_absolute_error": "mae", "MeanAbsoluteError": "mae", "MAE": "mae",
}


def loss_name(name):
    """cnnkit's name for a loss however Keras spells it (`MeanSquaredError` -> `mse`); any
    other value as it is, for the registry's check to name."""
    return KERAS_SPELLINGS.get(name, name) if isinstance(name, str) else name


def make_loss(name: str, num_classes: int, output_activation: str | None = "softmax",
              label_smoothing: float = 0.0, class_weight=None):
    """A callable `(logits (B, K), y int64 (B,)) -> scalar` for the named loss. `y` may also
    be float rows (B, K) of class probabilities, mixup's and CutMix's (cnnkit.data.mixing,
    made by `one_hot` with this smoothing and then mixed), taken as they are.

    `binary_crossentropy` needs two classes (a 1-unit sigmoid output, or 2 units).
    `class_weight`: K weights (cnnkit.data.balance.class_weights); each image's loss is
    weighted by its class's, as Keras's fit(class_weight=...) does (see `reduce`)."""
    if name not in LOSSES:
        raise one_of("loss", name, LOSSES)
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise one_of("output activation", output_activation, ["softmax", "sigmoid", "None"])
    if name == "binary_crossentropy" and num_classes != 2:
        raise CnnkitError(f"binary_crossentropy needs 2 classes; the data has {num_classes} "
                          "— use sparse_categorical_crossentropy")
    expected = (1, 2) if name == "binary_crossentropy" else (num_classes,)
    math, ls = LOSSES[name], float(label_smoothing)
    if class_weight is not None:
        import torch

        class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
        if len(class_weight) != num_classes:
            raise CnnkitError(f"class_weight has {len(class_weight)} weights for {num_classes} "
                              "classes; valid: one per class", option="class_weight")

    def loss(logits, y):
        units = logits.shape[1]
        if units not in expected:
            raise CnnkitError(f"the model outputs {units} units but the data has {num_classes} "
                              f"classes; make the last layer Dense({num_classes})")
        weights = None
        if class_weight is not None:  # (B,): a mixed image's is its classes' by their shares
            cw = class_weight.to(logits.device)
            weights = y.float() @ cw if y.is_floating_point() else cw[y]
        return math(logits.float(), output_activation, y, ls, weights)

    loss.__name__ = name
    return loss


def config_losses(config, k: int, output_activation, y_train, class_names=None):
    """(the loss, the training batches' loss) of a TrainConfig: its class_weight weighs the
    training batches only, as Keras's does; validation and test losses are unweighted."""
    from cnnkit.data.balance import class_weights

    loss = make_loss(config.loss, k, output_activation, config.label_smoothing)
    weights = class_weights(config.class_weight, y_train, class_names or list(map(str, range(k))))
    return loss, loss if weights is None else make_loss(
        config.loss, k, output_activation, config.label_smoothing, class_weight=weights)


# -- training accuracy, by the output contract (cnnkit.model.outputs) ------------------------------
def correct_count(logits, y, output_activation: str | None = None):
    """Number of right predictions as a tensor (no host sync, so it can be summed per batch).
    Against mixed targets (B, K) a prediction is right when it is the dominant label, the class
    with the larger share of the mixed image (mixup's lam >= 0.5: the image's own)."""
    if y.is_floating_point() and y.ndim == 2:
        y = y.argmax(1)
    return (outputs.predicted_class(logits, output_activation) == y).sum()


def accuracy(logits, y, output_activation: str | None = None) -> float:
    """Fraction of samples whose predicted class is the label."""
    return correct_count(logits, y, output_activation).item() / max(len(y), 1)
