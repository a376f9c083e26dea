"""`cnnkit.fit(model, data, ...)`: training in memory (cnnkit.train.module.fit), or, with
`out="runs/x"`, a cnnkit run of your own nn.Module that writes its directory:

    model = cnnkit.fit(CNN(), "digits", epochs=5, out="runs/cnn")
    cnnkit.fit(CNN(), "digits", epochs=8, out="runs/cnn", resume=True)   # 3 epochs more

It lives in the runs stage because a run is: the train stage below knows no run directory."""
from __future__ import annotations

from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.runs.run import run
from cnnkit.runs.spec import RunSpec
from cnnkit.train.module import fit as fit_in_memory
from cnnkit.train.trainer import History


def fit(model, data=None, y=None, *, out=None, resume=False, **kwargs):
    """cnnkit.train.module.fit's arguments; `out="runs/x"` (a module and a dataset name): a
    cnnkit run writing its directory (any RunSpec option as a keyword; `model.run` is its
    RunResult); `resume=True` continues it."""
    if out is None and not resume:
        return fit_in_memory(model, data, y, **kwargs)
    if not isinstance(model, nn.Module) or hasattr(model, "layer_infos"):
        raise CnnkitError("fit(..., out=...) is for your own nn.Module; a cnnkit model "
                          "writes a run with cnnkit.run(RunSpec(model=..., out=...))")
    if y is not None:
        raise CnnkitError("fit(..., out=...) trains on a dataset by name, not on arrays "
                          "(x, y); valid: fit(module, 'digits', out=...)")
    if out is None:
        raise CnnkitError("resume=True needs out: the run directory to continue")
    return fit_run(model, data, out, resume=bool(resume), **kwargs)


# fit's own keywords that a run (`out=`) names differently or does not take
RUN_NAMES = {"validation_split": "val_split"}


def fit_run(module: nn.Module, data, out, resume: bool = False, callbacks=None, **options):
    """`fit(module, "digits", out=...)`: the training as a cnnkit run, its directory written."""
    if not isinstance(data, str):
        raise CnnkitError(f"fit(..., out={str(out)!r}) trains on a dataset by name (a run "
                          f"directory records it); received {type(data).__name__}; valid: "
                          "'digits', 'fashion-mnist', 'npz:PATH', ...")
    named = options.get("optimizer") is None or isinstance(options["optimizer"], str)
    if options.get("scheduler") is not None or not named:
        raise CnnkitError("fit(..., out=...) records its optimizer by name, so that resume=True "
                          "can rebuild it; torch.optim optimizer and scheduler objects train in "
                          "memory (leave out out=), or give optimizer='adam' and schedule=...")
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
    model.history, model.run = History(result.history), result
    return model
