"""Your own `torch.nn.Module`, trained by cnnkit's engine: any module mapping float NCHW
batches (B, C, H, W) in [0, 1] to logits (B, K), as seed 003's `CNN` class does.

    model = cnnkit.fit(CNN(), "fashion-mnist", epochs=15, batch_size=100, lr=1e-3, seed=777)
    model.evaluate(x_test, y_test)      # {'loss', 'accuracy'}
    model.predict(images)               # class probabilities, any image form cnnkit takes

A module cnnkit did not build gets contiguous NCHW batches (code such as
`out.view(out.size(0), -1)` works as in a hand-written loop); channels_last is only for the
networks cnnkit builds. Callbacks, `seed=` (shuffle order and dropout) and resumable training
states work as for cnnkit's own models; `torch.manual_seed(777)` before building the module
fixes its initial weights, as in the seed.

With `out=` the training is a cnnkit run (`cnnkit.run`) and leaves a run directory:

    model = cnnkit.fit(CNN(), "digits", epochs=5, out="runs/cnn")   # config.json, history.csv,
    #                      metrics.json, best/ last/ (weights), curves and confusion matrix
    cnnkit.fit(CNN(), "digits", epochs=8, out="runs/cnn", resume=True)   # 3 epochs more
    model = cnnkit.load("runs/cnn/best", module=CNN())                   # evaluate, predict

A module's code is yours, not a description cnnkit can rebuild: config.json records its class
(`module.CNN`) and input shape, best/ and last/ its weights (`module.json` beside them), and
loading or resuming asks for an instance of the class again.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError


def standard_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` with NCHW's own strides. `contiguous()` is not enough: a one-channel channels_last
    batch already counts as contiguous, yet convolutions read its strides as channels_last and
    hand channels_last outputs to code that then calls `.view`."""
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.insert(0, step)
        step *= size
    return x if list(x.stride()) == expected else x.clone(memory_format=torch.contiguous_format)


class ForeignNet(nn.Module):
    """The model contract around a user's module: logits out, no split-off activation."""

    output_activation = None
    flip_average = False

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.output_shape = None  # (K,), known after the first batch

    def forward(self, x):  # (B, C, H, W)
        logits = self.module(standard_layout(x))
        if self.output_shape is None:
            self.output_shape = tuple(logits.shape[1:])
        return logits

    def outputs(self, logits):
        return logits

    def probabilities(self, logits):
        from cnnkit.model.outputs import probabilities

        return probabilities(logits, None)


MODULE_FILE = "module.json"  # beside weights.safetensors: what a saved module's weights are


def class_path(module: nn.Module) -> str:
    """`package.file.CNN`: the class config.json names (cnnkit cannot import it back: a class
    from a notebook or a script is `__main__.CNN`)."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_module_description(model) -> bool:
    """The `model` a run of a user's module records: {"module": "package.file.CNN"}."""
    return isinstance(model, dict) and set(model) == {"module"}


def module_needed(subject: str, description: dict) -> CnnkitError:
    """`subject`: "runs/x/best holds the weights of", "runs/x was trained with"."""
    name = description["module"].rsplit(".", 1)[-1]
    return CnnkitError(f"{subject} your own nn.Module {description['module']}, which cnnkit "
                       f"cannot rebuild from files; give an instance again: module={name}() to "
                       f"cnnkit.load or cnnkit.evaluate (cnnkit.load(..., module={name}())), or "
                       f"model={name}() to cnnkit.fit / cnnkit.run with resume=True")


class ModuleModel:
    """What cnnkit's Trainer, evaluate and predict need from a model, for a plain module."""

    foreign = True
    compiled = None  # no Keras-style compile(): options go to fit
    output_activation = None  # logits: the loss applies softmax itself
    test_time_flip = False

    def __init__(self, module: nn.Module, input_shape=None, class_names=None, name=None):
        if not isinstance(module, nn.Module):
            raise CnnkitError(f"not a torch.nn.Module: {type(module).__name__}")
        self.module = module
        self.net = ForeignNet(module)
        self.name = name or type(module).__name__
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.class_names = list(class_names) if class_names else None
        self.preprocessing = {"normalize": "unit"}
        self.dataset = None
        self.trainer = None

    def _require_input(self):
        if self.input_shape is None:
            raise CnnkitError(f"{self.name} has not seen data yet: its input shape is unknown "
                              "(fit it first, or pass input_shape=(H, W, C))")
        return self.input_shape

    def check_classifier(self):
        pass

    def predict(self, x, batch_size: int = 256):
        """Class probabilities (N, K), or (K,) for one image (cnnkit.model.predict)."""
        from cnnkit.model.predict import predict_proba

        self.output_classes()
        return predict_proba(self, x, batch_size=batch_size)

    def evaluate(self, x, y, batch_size: int = 1000) -> dict:
        from cnnkit.train.api import evaluate

        return evaluate(self, x, y, batch_size=batch_size)

    def output_classes(self) -> int:
        """K, from one forward pass of a blank image if no batch has been seen yet."""
        if self.net.output_shape is None:
            with torch.no_grad():  # not inference_mode: a lazy layer's weights must stay trainable
                self.net.eval()
                self.net(torch.zeros((1, self._require_input()[2], *self.input_shape[:2])))
        if len(self.net.output_shape) != 1:
            raise CnnkitError(f"{self.name} returns outputs of shape (B, "
                              f"{', '.join(map(str, self.net.output_shape))}); valid: logits "
                              "(B, K), one per class")
        return self.net.output_shape[0]

    @property
    def output_shape(self) -> tuple[int]:
        return (self.output_classes(),)

    def summary_dict(self) -> dict:
        """What a run's config.json records of the model (no layer table: the code is yours)."""
        params = list(self.module.parameters())
        return {"name": self.name, "module": class_path(self.module),
                "input_shape": list(self._require_input()), "output_shape":
                [self.output_classes()], "total_params": sum(p.numel() for p in params),
                "trainable_params": sum(p.numel() for p in params if p.requires_grad)}

    def save(self, path):
        """The module's weights as `weights.safetensors` in a directory, under the module's
        own names (`CNN().load_state_dict(safetensors.torch.load_file(...))` works), and
        `module.json` (class, input shape, class names): `cnnkit.load(path, module=CNN())`."""
        import json

        from safetensors.torch import save_file

        from cnnkit.fsutil import atomic_dir

        meta = {"module": class_path(self.module), "input_shape": list(self._require_input()),
                "class_names": self.class_names, "dataset": self.dataset}
        with atomic_dir(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()},
                      str(tmp / "weights.safetensors"))
            (tmp / MODULE_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    def __repr__(self):
        return f"ModuleModel({self.name}, input_shape={self.input_shape})"


def as_model(model):
    """A cnnkit model as it is; a plain nn.Module wrapped in a ModuleModel."""
    if isinstance(model, nn.Module) and not hasattr(model, "layer_infos"):
        return ModuleModel(model)
    return model


def load_module(path, module: nn.Module | None) -> ModuleModel:
    """A directory `ModuleModel.save` wrote, into `module` (an instance of its class)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    path = Path(path)
    if (path / "best" / MODULE_FILE).is_file():  # a run directory: its best model
        path = path / "best"
    meta_file = path / MODULE_FILE
    if not meta_file.is_file():
        raise CnnkitError(f"{path} has no {MODULE_FILE}: not the weights of your own nn.Module; "
                          f"valid with module=: a run of one (RUN or RUN/best) or a folder "
                          f"ModuleModel.save wrote (a cnnkit model loads without module=)")
    try:
        meta = json.loads(meta_file.read_text())
        shape, names = tuple(meta["input_shape"]), meta.get("class_names")
    except (ValueError, KeyError, TypeError) as e:
        raise CnnkitError(f"{meta_file}: corrupt ({type(e).__name__}: {e})") from None
    if module is None:
        raise module_needed(f"{path} holds the weights of", meta)
    model = ModuleModel(module, input_shape=shape, class_names=names)
    model.dataset = meta.get("dataset")
    load_weights_into(module, load_file(str(path / "weights.safetensors")), str(path))
    module.eval()
    return model


def load_weights_into(module: nn.Module, state: dict, where: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:  # torch lists every missing/unexpected/mis-shaped tensor
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise CnnkitError(f"{where}: weights do not fit {type(module).__name__}: "
                          f"{first.strip()}") from None


# fit's own keywords that a run (`out=`) names differently or does not take
RUN_NAMES = {"validation_split": "val_split"}


def fit_run(module: nn.Module, data, out, resume: bool = False, callbacks=None, **options):
    """`fit(module, "digits", out=...)`: the training as a cnnkit run, its directory written."""
    from cnnkit.runs.run import run
    from cnnkit.runs.spec import RunSpec

    if not isinstance(data, str):
        raise CnnkitError(f"fit(..., out={str(out)!r}) trains on a dataset by name (a run "
                          f"directory records it); received {type(data).__name__}; valid: "
                          "'digits', 'fashion-mnist', 'npz:PATH', ...")
    fields = set(RunSpec.fields())
    spec_options = {}
    for key, value in options.items():
        name = RUN_NAMES.get(key, key)
        if name not in fields or name in ("model", "dataset", "out"):
            valid = sorted(fields - {"model", "dataset", "out"} | set(RUN_NAMES))
            raise CnnkitError(f"fit(..., out=...) got an option {key}=...; valid: "
                              f"{', '.join(valid)}")
        spec_options[name] = value
    result = run(RunSpec(model=module, dataset=data, out=str(out), **spec_options),
                 resume=resume, callbacks=callbacks)
    model = result.model
    from cnnkit.train.trainer import History

    model.history, model.run = History(result.history), result
    return model


def fit(model, data=None, y=None, **kwargs):
    """Train a cnnkit Sequential or your own nn.Module; returns the model (a ModuleModel for a
    module: `.evaluate`, `.predict`, `.history`, `.module` your module, trained in place).

    `data`: a dataset name ("fashion-mnist", "digits", ...), a cnnkit Dataset, or images with
    labels `y`. Keywords: fit's (epochs, batch_size, validation_split, validation_data,
    callbacks, seed, verbose) and any TrainConfig option (optimizer, lr, loss, ...).

    `out="runs/x"` (a module and a dataset name): a cnnkit run writing its directory (any
    RunSpec option as a keyword; `model.run` is its RunResult); `resume=True` continues it."""
    from cnnkit.data.base import Dataset
    from cnnkit.train.api import fit as fit_model

    if kwargs.get("out") is not None or kwargs.get("resume"):
        if not isinstance(model, nn.Module) or hasattr(model, "layer_infos"):
            raise CnnkitError("fit(..., out=...) is for your own nn.Module; a cnnkit model "
                              "writes a run with cnnkit.run(RunSpec(model=..., out=...))")
        if y is not None:
            raise CnnkitError("fit(..., out=...) trains on a dataset by name, not on arrays "
                              "(x, y); valid: fit(module, 'digits', out=...)")
        if kwargs.get("out") is None:
            raise CnnkitError("resume=True needs out: the run directory to continue")
        out = kwargs.pop("out")
        return fit_run(model, data, out, resume=bool(kwargs.pop("resume", False)), **kwargs)
    kwargs.pop("out", None)  # out=None, resume=False: fit in memory, as without them
    kwargs.pop("resume", None)
    model = as_model(model)
    if isinstance(data, str):
        from cnnkit.data import load_dataset

        data = load_dataset(data)
    if isinstance(model, ModuleModel) and model.input_shape is None:
        x = data.x_train if isinstance(data, Dataset) else data
        if x is None:
            raise CnnkitError("fit needs data: fit(module, 'fashion-mnist') or fit(module, x, y)")
        shape = tuple(int(s) for s in (x.shape if hasattr(x, "shape") else np.shape(x)))
        if len(shape) not in (3, 4):
            raise CnnkitError(f"images of shape {shape}; valid: (N, H, W) or (N, H, W, C)")
        model.input_shape = shape[1:] if len(shape) == 4 else shape[1:] + (1,)
    model.history = fit_model(model, data, y, **kwargs)
    return model
