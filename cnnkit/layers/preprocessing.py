"""Preprocessing and augmentation layers inside the model, with Keras 3's arguments, defaults
and numbers: Rescaling, Normalization (with `adapt`), Resizing, and the random layers
RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast.

The random layers act in training only and are the identity at inference (predict, evaluate,
export). `seed=` is accepted and saved, as Keras's, but the draws come from torch's global
generator, so the run's seed decides them (as for Dropout). Their modules are in
preprocessing_nn.py; the resampling is warp.py's, shared with cnnkit.data.augment.
"""
from __future__ import annotations

import weakref

from cnnkit.layers.base import Layer, _bool, _positive_int, _real, _spatial, clipped
from cnnkit.layers.core import _NoWeights, register_layer

FILL_MODES = ("reflect", "wrap", "constant", "nearest")  # warp.resample's, in Keras's order
INTERPOLATIONS = ("bilinear", "nearest")  # the random layers': grid_sample's modes
RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "bicubic")  # those F.interpolate computes as Keras
UNSUPPORTED_RESIZE = ("area", "lanczos3", "lanczos5")  # Keras's others


def _choice(layer: Layer, key: str, value, valid, unsupported=()) -> str:
    if value not in valid:
        cannot = f" (not supported: {', '.join(map(repr, unsupported))})" if unsupported else ""
        raise layer._error(f"{key}={clipped(value)} is not supported; valid: "
                           f"{', '.join(repr(v) for v in valid)}{cannot}")
    return value


def _factor(layer: Layer, key: str, value, low: float, high: float, number_low=None):
    """Keras's factor forms as (lower, upper): a number f (lower, upper = -|f|, |f|, or
    `number_low`, |f|) or a (lower, upper) pair, sorted, each in [low, high]."""
    valid = f"a number in [{low:g}, {high:g}] or a (lower, upper) pair of them"
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise layer._error(f"{key} must be {valid}; received {key}={clipped(value)}")
        pair = [_real(layer, key, v, lambda v: low <= v <= high, valid) for v in value]
        return min(pair), max(pair)
    f = abs(_real(layer, key, value, lambda v: low <= v <= high, valid))
    return (-f if number_low is None else number_low), f


def _seed(layer: Layer, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise layer._error(f"seed must be an integer or None; received seed={clipped(value)}")
    return value


def _given(config: dict) -> dict:
    """A config without its None values (their defaults): TOML, a model file's form, has no null."""
    return {k: v for k, v in config.items() if v is not None}


def _plain(value):
    """A factor as a config holds it: lists, not tuples."""
    return list(value) if isinstance(value, tuple) else value


class Rescaling(_NoWeights):
    base_name = "rescaling"

    def __init__(self, scale, offset=0.0, name=None):
        super().__init__(name)
        valid = "a finite number or a list of them (one per channel)"
        if isinstance(scale, (list, tuple)):  # per channel, as Keras's EfficientNet uses it
            if not scale:
                raise self._error(f"scale must be {valid}; received scale={clipped(scale)}")
            self.scale = [_real(self, "scale", v, lambda v: True, valid) for v in scale]
        else:
            self.scale = _real(self, "scale", scale, lambda v: True, valid)
        self.offset = _real(self, "offset", offset, lambda v: True, "a finite number")

    def get_config(self):
        return {"scale": self.scale, "offset": self.offset}

    def output_shape(self, shape):
        if isinstance(self.scale, list) and len(self.scale) not in (1, shape[-1]):
            raise self._error(f"{len(self.scale)} scale factors for {shape[-1]} channels; "
                              "valid: one, or one per channel")
        return shape

    def explain(self, shape, out):
        scale = (f"{self.scale:g}" if not isinstance(self.scale, list)
                 else "(" + ", ".join(f"{v:g}" for v in self.scale) + ") per channel")
        return [f"x · {scale} + {self.offset:g} for each value; no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return pnn.Rescale(self.scale, self.offset)


class Normalization(Layer):
    """(x - mean) / sqrt(variance) per channel (axis=-1) or over all values (axis=None).
    Statistics given as `mean=`/`variance=` are config (no weights); otherwise they are
    non-trainable weights (mean, variance, count: Keras counts 2·C + 1) that `adapt(data)`
    sets from data, as Keras computes them."""

    base_name = "normalization"

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, name=None):
        super().__init__(name)
        if axis in (None, (), []):
            self.axis = None
        elif axis in (-1, 3, (-1,), [-1], (3,), [3]):
            self.axis = -1
        else:
            raise self._error(f"axis={clipped(axis)} is not supported; valid: -1 (per channel, "
                              "the last axis) or None (one mean and variance)")
        if (mean is None) != (variance is None):
            raise self._error(f"mean and variance are given together or not at all; received "
                              f"mean={clipped(mean)}, variance={clipped(variance)}")
        self.mean = None if mean is None else self._values("mean", mean, lambda v: True)
        self.variance = None if variance is None else self._values(
            "variance", variance, lambda v: v >= 0)
        if self.mean is not None and len(self.mean) != len(self.variance):
            raise self._error(f"mean and variance must have the same length; received "
                              f"{len(self.mean)} and {len(self.variance)}")
        self.invert = _bool(self, "invert", invert)
        self.adapted = None  # (mean, variance) lists from adapt(), the weights' first values
        self._built = []  # weak references to the modules built, which adapt() updates

    def _values(self, key, value, ok):
        items = value if isinstance(value, (list, tuple)) else [value]
        valid = "a finite number or a list of them" + (" >= 0" if key == "variance" else "")
        if not items:
            raise self._error(f"{key} must be {valid}; received {key}={clipped(value)}")
        return [_real(self, key, v, ok, valid) for v in items]

    def get_config(self):
        return {"axis": self.axis, **_given({"mean": self.mean, "variance": self.variance}),
                "invert": self.invert}

    def _size(self, shape) -> int:
        """How many means: one per channel (or vector feature), or one."""
        return 1 if self.axis is None else shape[-1]

    def output_shape(self, shape):
        given = self.mean or (self.adapted[0] if self.adapted else None)
        if given is not None and len(given) not in (1, self._size(shape)):
            raise self._error(f"{len(given)} means do not fit an input of {shape[-1]} channels; "
                              f"valid: 1 or {shape[-1]}")
        return shape

    def params(self, shape):
        return (0, 0) if self.mean is not None else (0, 2 * self._size(shape) + 1)

    def explain(self, shape, out):
        n = self._size(shape)
        if self.mean is not None:
            return ["(x - mean) / sqrt(variance), mean and variance given; no parameters"]
        return [f"(x - mean) / sqrt(variance); {2 * n + 1} non-trainable: mean ({n}), "
                f"variance ({n}), count (1), set by adapt()"]

    def adapt(self, data) -> None:
        """Set the mean and variance from `data`: an array or tensor of inputs (N, H, W, C)
        or (N, D), or an iterable of such batches; as Keras, over every axis but the kept one.
        They become the weights of the model it is in, whether built already or later."""
        import numpy as np

        batches = [data] if hasattr(data, "shape") else list(data)
        arrays = [np.asarray(b, dtype=np.float64) for b in batches]
        if not arrays or any(a.ndim < 2 or a.shape[1:] != arrays[0].shape[1:] for a in arrays):
            raise self._error("adapt needs an array of inputs (N, H, W, C) or (N, D), or batches "
                              f"of one shape; received {clipped([a.shape for a in arrays])}")
        flat = np.concatenate([a.reshape(-1, a.shape[-1] if self.axis == -1 else 1)
                               for a in arrays])
        built = [m for m in (ref() for ref in self._built) if m is not None]
        if any(m.mean.numel() != flat.shape[1] for m in built):  # checked before anything changes
            raise self._error(f"adapt: data with {flat.shape[1]} channels do not fit the model "
                              f"this layer is in ({built[0].mean.numel()} channels)")
        self.adapted = (flat.mean(axis=0).tolist(), flat.var(axis=0).tolist())
        for module in built:
            module.set_statistics(*self.adapted)

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        self.output_shape(shape)
        n = self._size(shape)
        mean, variance = (self.mean, self.variance) if self.mean is not None else (
            self.adapted or ([0.0] * n, [1.0] * n))  # Keras's initial weights: zeros, ones
        if len(mean) != n:  # one number for every channel
            mean, variance = mean * n, variance * n
        if self.axis is None:
            mean, variance = mean[0], variance[0]
        module = pnn.Normalize(mean, variance, self.invert, persistent=self.mean is None)
        if self.mean is None:
            self._built = [r for r in self._built if r() is not None] + [weakref.ref(module)]
        return module


class Resizing(_NoWeights):
    base_name = "resizing"

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 name=None):
        super().__init__(name)
        self.height = _positive_int(self, "height", height)
        self.width = _positive_int(self, "width", width)
        self.interpolation = _choice(self, "interpolation", interpolation, RESIZE_INTERPOLATIONS,
                                     UNSUPPORTED_RESIZE)
        self.crop_to_aspect_ratio = _bool(self, "crop_to_aspect_ratio", crop_to_aspect_ratio)

    def get_config(self):
        return {"height": self.height, "width": self.width, "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio}

    def output_shape(self, shape):
        return self.height, self.width, _spatial(self, shape)[2]

    def explain(self, shape, out):
        crop = ", centre-cropped to its aspect ratio first" if self.crop_to_aspect_ratio else ""
        return [f"{shape[0]} × {shape[1]} → {out[0]} × {out[1]} ({self.interpolation}{crop}); "
                "no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return pnn.Resize(self.height, self.width, self.interpolation, self.crop_to_aspect_ratio)


class _Random(_NoWeights):
    """An augmentation layer: images in, same shape out, random in training only."""

    def output_shape(self, shape):
        return _spatial(self, shape)

    def explain(self, shape, out):
        return ["training: random per image; inference: identity; no parameters"]


class _RandomAffine(_Random):
    def _fill(self, fill_mode, interpolation, fill_value, seed):
        self.fill_mode = _choice(self, "fill_mode", fill_mode, FILL_MODES)
        self.interpolation = _choice(self, "interpolation", interpolation, INTERPOLATIONS)
        self.fill_value = _real(self, "fill_value", fill_value, lambda v: True, "a finite number")
        self.seed = _seed(self, seed)

    def _fill_config(self):
        return _given({"fill_mode": self.fill_mode, "interpolation": self.interpolation,
                       "seed": self.seed, "fill_value": self.fill_value})

    def _module(self, matrices):
        from cnnkit.layers import preprocessing_nn as pnn

        return pnn.RandomAffine(matrices, self.fill_mode, self.fill_value, self.interpolation)


class RandomFlip(_Random):
    base_name = "random_flip"
    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, name=None):
        super().__init__(name)
        self.mode = _choice(self, "mode", mode, self.MODES)
        self.seed = _seed(self, seed)

    def get_config(self):
        return _given({"mode": self.mode, "seed": self.seed})

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return pnn.RandomFlip("horizontal" in self.mode, "vertical" in self.mode)


class RandomRotation(_RandomAffine):
    """factor: a fraction of a full turn (0.1 = up to 36°), or a (lower, upper) pair."""

    base_name = "random_rotation"

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None):
        super().__init__(name)
        self.factor = _plain(factor)
        self.range = _factor(self, "factor", factor, -1.0, 1.0)
        self._fill(fill_mode, interpolation, fill_value, seed)

    def get_config(self):
        return {"factor": self.factor, **self._fill_config()}

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return self._module(pnn.rotation_matrices(*self.range))


class RandomZoom(_RandomAffine):
    """height_factor, width_factor: fractions of the size; > 0 zooms out, < 0 zooms in."""

    base_name = "random_zoom"

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, name=None):
        super().__init__(name)
        self.height_factor, self.width_factor = _plain(height_factor), _plain(width_factor)
        # Keras refuses -1 (a zoom of 0 samples one point)
        self.height_range = self._zoom_factor("height_factor", height_factor)
        self.width_range = None if width_factor is None else self._zoom_factor(
            "width_factor", width_factor)
        self._fill(fill_mode, interpolation, fill_value, seed)

    def _zoom_factor(self, key, value):
        lower, upper = _factor(self, key, value, -1.0, 1.0)
        if lower <= -1.0:
            raise self._error(f"{key} must be in (-1, 1]; received {key}={clipped(value)}")
        return lower, upper

    def get_config(self):
        return _given({"height_factor": self.height_factor, "width_factor": self.width_factor,
                       **self._fill_config()})

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return self._module(pnn.zoom_matrices(self.height_range, self.width_range))


class RandomTranslation(_RandomAffine):
    """height_factor, width_factor: shifts as fractions of the height and width."""

    base_name = "random_translation"

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, name=None):
        super().__init__(name)
        self.height_factor, self.width_factor = _plain(height_factor), _plain(width_factor)
        self.height_range = _factor(self, "height_factor", height_factor, -1.0, 1.0)
        self.width_range = _factor(self, "width_factor", width_factor, -1.0, 1.0)
        self._fill(fill_mode, interpolation, fill_value, seed)

    def get_config(self):
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **self._fill_config()}

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return self._module(pnn.translation_matrices(self.height_range, self.width_range))


class RandomContrast(_Random):
    """Contrast factor drawn in [1 - lower, 1 + upper]. As Keras 3 computes it, one number f
    means lower = 0, upper = f: factor=0.2 draws in [1, 1.2] (its docstring says [0.8, 1.2]);
    write factor=(0.2, 0.2) for [0.8, 1.2]."""

    base_name = "random_contrast"

    def __init__(self, factor, value_range=(0, 255), seed=None, name=None):
        super().__init__(name)
        self.factor = _plain(factor)
        self.range = _factor(self, "factor", factor, 0.0, 1.0, number_low=0.0)
        if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
            raise self._error(f"value_range must be a (low, high) pair; received "
                              f"value_range={clipped(value_range)}")
        low, high = (_real(self, "value_range", v, lambda v: True, "finite numbers")
                     for v in value_range)
        if low >= high:
            raise self._error(f"value_range must be (low, high) with low < high; received "
                              f"value_range={clipped(value_range)}")
        self.value_range = (low, high)
        self.seed = _seed(self, seed)

    def get_config(self):
        return _given({"factor": self.factor, "value_range": list(self.value_range),
                       "seed": self.seed})

    def build(self, shape, init):
        from cnnkit.layers import preprocessing_nn as pnn

        return pnn.RandomContrast(*self.range, self.value_range)


AUGMENTATION_LAYERS = (RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast)
PREPROCESSING_LAYERS = (Rescaling, Normalization, Resizing, *AUGMENTATION_LAYERS)
for _cls in PREPROCESSING_LAYERS:
    register_layer(_cls)
