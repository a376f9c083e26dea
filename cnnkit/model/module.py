"""A user's own `torch.nn.Module` as a cnnkit model: the model contract (cnnkit.model.contract)
around any module mapping float NCHW batches (B, C, H, W) in [0, 1] to logits (B, K), as seed
003's `CNN` class does. Training it is cnnkit.train.module's `fit`; this is what every stage
that uses a model (evaluate, predict, save, load, a run) holds.

A module's code is yours, not a description cnnkit can rebuild: a run's config.json records
its class (`module.CNN`) and input shape, best/ and last/ its weights (`module.json` beside
them), and loading or resuming asks for an instance of the class again.
"""
from __future__ import annotations

import torch
from torch import nn

from cnnkit.data.batches import standard_layout
from cnnkit.errors import CnnkitError, clipped, printable


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
        from cnnkit.layers.outputs import probabilities

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
        from cnnkit.model.provided import provided

        return provided("evaluate")(self, x, y, batch_size=batch_size)  # cnnkit.train.api

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

    def summary(self, explain: bool = False, print_fn=None) -> None:
        """What cnnkit knows of your module: its class, shapes and parameter counts (its
        layers are your code; `explain` has no arithmetic to show)."""
        d = self.summary_dict()
        lines = [f'Model: "{d["name"]}" (your own nn.Module {d["module"]})',
                 f'input: {tuple(d["input_shape"])} -> output: {tuple(d["output_shape"])}',
                 f'Total params: {d["total_params"]:,}', f'Trainable params: {d["trainable_params"]:,}']
        for line in lines:
            (print_fn or print)(line)

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
    from pathlib import Path

    from cnnkit.io.bounded import read_bounded
    from cnnkit.io.tensors import read_safetensors

    path = Path(path)
    if (path / "best" / MODULE_FILE).is_file():  # a run directory: its best model
        path = path / "best"
    meta_file = path / MODULE_FILE
    if not meta_file.is_file():
        raise CnnkitError(f"{path} has no {MODULE_FILE}: not the weights of your own nn.Module; "
                          f"valid with module=: a run of one (RUN or RUN/best) or a folder "
                          f"ModuleModel.save wrote (a cnnkit model loads without module=)")
    meta = read_bounded(meta_file, "json", "module description", label="corrupt")
    try:
        shape, names = tuple(meta["input_shape"]), meta.get("class_names")
    except (ValueError, KeyError, TypeError) as e:
        raise CnnkitError(f"{meta_file}: corrupt ({type(e).__name__}: {e})") from None
    if module is None:
        raise module_needed(f"{path} holds the weights of", meta)
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(n, str) for n in names)):
        raise CnnkitError(f"{meta_file}: class_names={clipped(names)}; valid: a list of names")
    model = ModuleModel(module, input_shape=shape,
                        class_names=None if names is None else [printable(n) for n in names])
    model.dataset = meta.get("dataset")
    load_weights_into(module, read_safetensors(path / "weights.safetensors"), str(path))
    module.eval()
    return model


def load_weights_into(module: nn.Module, state: dict, where: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:  # torch lists every missing/unexpected/mis-shaped tensor
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise CnnkitError(f"{where}: weights do not fit {type(module).__name__}: "
                          f"{first.strip()}") from None
