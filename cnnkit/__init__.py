"""cnnkit: convolutional image classifiers, the Keras way, on PyTorch.

Heavy imports (torch) happen on first use of a name, so `import cnnkit` and the CLI start fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Sequential": ("cnnkit.model.sequential", "Sequential"),
    "Model": ("cnnkit.model.graph", "Functional"),  # Model(inputs, outputs): a graph
    "Functional": ("cnnkit.model.graph", "Functional"),
    "load": ("cnnkit.model.saving", "load"),
    "create_model": ("cnnkit.model.presets", "create_model"),
    "load_model_file": ("cnnkit.model.files", "load_model_file"),
    "layers": ("cnnkit.layers", None),
    "CnnkitError": ("cnnkit.errors", "CnnkitError"),
    "run": ("cnnkit.runs.run", "run"),
    "fit": ("cnnkit.runs.fit", "fit"),
    "Trainer": ("cnnkit.train.trainer", "Trainer"),
    "keras": ("cnnkit.keras", None),
    "data": ("cnnkit.data", None),
    "resume": ("cnnkit.runs.run", "resume"),
    "RunSpec": ("cnnkit.runs.spec", "RunSpec"),
    "RunResult": ("cnnkit.runs.spec", "RunResult"),
    "evaluate": ("cnnkit.runs.evaluate", "evaluate"),
    "Predictor": ("cnnkit.serve.predictor", "Predictor"),
    "export_onnx": ("cnnkit.serve.onnx", "export_onnx"),
    "tune": ("cnnkit.search.study", "tune"),
    "cross_validate": ("cnnkit.search.cv", "cross_validate"),
}


# What lower stages ask for by name and higher stages provide (cnnkit.model.provided): a
# model's fit, evaluate and pictures, a callback's confusion matrix, an ONNX file's predictor.
PROVIDED = {
    "fit": "cnnkit.train.api:fit",
    "evaluate": "cnnkit.train.api:evaluate",
    "TrainConfig": "cnnkit.train.config:TrainConfig",
    "plot_model": "cnnkit.look.diagram:plot_model",
    "feature_maps": "cnnkit.look.inside:feature_maps",
    "plot_confusion_matrix": "cnnkit.look.plots:plot_confusion_matrix",
    "onnx_predictor": "cnnkit.serve.predictor:Predictor",
    "parallel_run": "cnnkit.distributed:parallel_run",
}


def _wire() -> None:
    from cnnkit.model.provided import provide

    provide(**PROVIDED)


_wire()


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


__all__ = list(_LAZY)
