"""Imbalanced classes: how uneven a split is (`imbalance_note`), each class's weight in the loss
(`class_weights`: 'balanced' or a mapping), and a training epoch that draws the classes equally
(`balanced_order`: indices into the one uint8 tensor, batched as any epoch's order is).

    class_weight  'balanced': n / (K · n_k), scikit-learn's compute_class_weight('balanced');
                  a mapping {class name or id: weight}: those classes that weight, the others 1
                  (Keras's fit(class_weight=...) reading of a partial dict)
    sampler       'balanced': each epoch draws N images with replacement, each class with the
                  same probability (1 / K), so a rare class's images repeat within an epoch

The checks are stdlib only (TrainConfig and RunSpec check their values before torch loads).
"""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError, one_of

CLASS_WEIGHTS = ("balanced",)  # or a mapping (a JSON file on the command line)
SAMPLERS = ("balanced",)
IMBALANCE_RATIO = 3  # the largest class at least this many times the smallest: a warning
VALID_WEIGHT = ("'balanced', or a mapping {class name or id: weight >= 0} (on the command "
                "line: a JSON file of it)")


def check_class_weight(value, option: str = "class_weight"):
    """None, 'balanced', or a mapping of class names or ids to weights >= 0; one clear line
    for anything else."""
    if value is None or value in CLASS_WEIGHTS:
        return value
    if not isinstance(value, dict) or not value:
        raise CnnkitError(f"{option}={value!r} is not understood; valid: {VALID_WEIGHT}",
                          option=option, value=value)
    for key, w in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise CnnkitError(f"{option}: class {key!r} is not a class name or id; valid: "
                              f"{VALID_WEIGHT}", option=option, value=value)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) \
                or w < 0:
            raise CnnkitError(f"{option}: weight {w!r} of class {key!r} is out of range; valid: "
                              "a number >= 0", option=option, value=value)
    return value


def read_class_weight(value, option: str = "class_weight"):
    """'balanced' or a mapping as given; any other text is a JSON file's path, read into its
    mapping (so config.json records the weights themselves, not a file that may change)."""
    if isinstance(value, str) and value not in CLASS_WEIGHTS:
        from pathlib import Path

        from cnnkit.io.bounded import read_bounded

        path = Path(value)
        if not path.is_file():
            raise CnnkitError(f"{option}={value!r} is neither 'balanced' nor a JSON file; valid: "
                              f"{VALID_WEIGHT}", option=option, value=value)
        value = read_bounded(path, "json", "class weight file")
        if not isinstance(value, dict):
            raise CnnkitError(f"{option}: {path} holds {type(value).__name__}; valid: "
                              f"{VALID_WEIGHT}", option=option, value=str(path))
    return check_class_weight(value, option)


def check_sampler(value, option: str = "sampler"):
    if value is not None and value not in SAMPLERS:
        raise CnnkitError(str(one_of(option, value, SAMPLERS)), option=option, value=value)
    return value


def class_index(key, class_names, option: str = "class_weight") -> int:
    """A class id from its name, or from its id (an int, or its digits as JSON keys are)."""
    names = list(class_names)
    if isinstance(key, str) and key in names:
        return names.index(key)
    text = str(key).strip()
    if text.isdecimal() and int(text) < len(names):
        return int(text)
    shown_names = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise CnnkitError(f"{option}: unknown class {key!r}; valid: a class name ({shown_names}) "
                      f"or an id 0..{len(names) - 1}", option=option, value=key)


def class_counts(y, k: int) -> list[int]:
    """Images per class id 0..k-1 of labels `y` (a tensor of ids)."""
    import torch

    return torch.bincount(torch.as_tensor(y).long(), minlength=k).tolist()


def class_weights(setting, y, class_names):
    """float32 (K,) weights for `setting` ('balanced' or a mapping) over training labels `y`
    (ids); None when `setting` is None."""
    import torch

    if setting is None:
        return None
    k = len(class_names)
    if setting == "balanced":
        counts = torch.tensor(class_counts(y, k), dtype=torch.float64)
        # n / (K · n_k); a class absent from the training labels never weighs in: 1
        w = torch.where(counts > 0, counts.sum() / (k * counts.clamp_min(1)), 1.0)
        return w.float()
    check_class_weight(setting)
    w = torch.ones(k, dtype=torch.float32)
    for key, value in setting.items():
        w[class_index(key, class_names)] = float(value)
    return w


def imbalance_note(counts, class_names, what: str = "training") -> str | None:
    """A warning when the largest class has IMBALANCE_RATIO times the images of the smallest
    (present) one, naming both and the two flags that help; None otherwise."""
    present = [(n, i) for i, n in enumerate(counts) if n > 0]
    if len(present) < 2:
        return None
    (small, i), (large, j) = min(present), max(present)
    if large < IMBALANCE_RATIO * small:
        return None
    return (f"the {what} classes are imbalanced: class {str(class_names[j])!r} has {large} "
            f"images, class {str(class_names[i])!r} {small} ({large / small:.1f}x); consider "
            "--class-weight balanced or --sampler balanced")


def balanced_order(y, generator):
    """An epoch's indices (N,) drawn with replacement so that each class present in `y` comes
    up with the same probability: image i with probability 1 / (K · n_{y_i})."""
    import torch

    y = torch.as_tensor(y).long().cpu()
    counts = torch.bincount(y).double()
    p = (1.0 / counts.clamp_min(1))[y]  # (N,): each class's images share 1 / K
    return torch.multinomial(p, len(y), replacement=True, generator=generator)
