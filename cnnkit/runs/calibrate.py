"""Temperature scaling (Guo et al. 2017): `cnnkit calibrate RUN`.

One number T divides the best model's logits before the output activation, fitted by
minimizing the negative log-likelihood on data the model did not train on: the run's
validation split, or where it has none, a tenth of its training split (which the model did
train on: said in the result, since T then comes out nearer 1). T > 0 scales every logit
alike, so no image's predicted class changes; only how sure the probabilities are.
T is stored in best/model.json (the description's "temperature"): predict, evaluate, serve
and ONNX export apply it (cnnkit.model.predict.pixel_probabilities).

    result = calibrate("runs/fashion")
    result.temperature, result.ece_before, result.ece_after
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.io.rundir import RunDir

HELD_OUT_SHARE = 0.1  # of the training split, where the run kept no validation split


@dataclass
class Calibration:
    temperature: float
    fitted_on: str  # "validation split" or "10% of the training split (...)"
    fit_images: int
    ece_before: float
    ece_after: float
    max_error_before: float
    max_error_after: float
    test_images: int


def fit_temperature(logits, y, output_activation: str | None = None) -> float:
    """The T > 0 minimizing the mean -log p(true class) of probabilities(logits / T): LBFGS on
    log T (so T stays positive), from T = 1."""
    import torch

    from cnnkit.layers.outputs import probabilities

    logits = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll():
        opt.zero_grad()
        p = probabilities(logits / log_t.exp(), output_activation)
        loss = -p[torch.arange(len(y)), y].clamp_min(1e-12).log().mean()
        loss.backward()
        return loss

    opt.step(nll)
    return float(log_t.detach().exp())


def calibrate(run_dir) -> Calibration:
    """Fit the run's temperature (above), store it in best/model.json and return the figures:
    ECE and maximum calibration error on the run's test split before and after."""
    import torch

    from cnnkit.look.metrics import calibration
    from cnnkit.model.predict import predict_logits
    from cnnkit.model.resolve import open_model
    from cnnkit.model.saving import CONFIG_FILE
    from cnnkit.runs.prepare import prepare_data

    run = RunDir(run_dir)
    options = run.options  # first: a folder that is not a run says so
    if not (run.best / CONFIG_FILE).is_file():
        raise CnnkitError(f"{run}: no best/ model to calibrate; valid: a finished run made with "
                          "artifacts 'full'")
    model, _ = open_model(run.best)
    if getattr(model, "foreign", False) or not hasattr(model, "temperature"):
        raise CnnkitError(f"{run}: a run of your own nn.Module keeps no model description to "
                          "store a temperature in; valid: a run of a cnnkit model")
    model.temperature = 1.0  # refitted from the raw logits, also on a second calibrate
    _, splits = prepare_data(options, tuple(model.input_shape)
                             if options["dataset"].startswith("folder:") else None)
    act = model.net.output_activation
    val = splits.get("val")
    if val is not None and val is not splits["test"]:
        (x_fit, y_fit), fitted_on = val, "the validation split"
    else:  # a fixed tenth of the training split, the same on every calibrate
        x, y = splits["train"]
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        idx = idx[:max(1, int(len(y) * HELD_OUT_SHARE))].sort().values
        from cnnkit.data.rows import take

        x_fit, y_fit = take(x, idx), torch.as_tensor(y)[idx]
        fitted_on = (f"{HELD_OUT_SHARE:.0%} of the training split (the run kept no validation "
                     "split; the model trained on these images)")
    t = fit_temperature(predict_logits(model, x_fit), torch.as_tensor(y_fit), act)
    x_test, y_test = splits["test"]
    from cnnkit.layers.outputs import probabilities

    logits = predict_logits(model, x_test)
    y_np = torch.as_tensor(y_test).numpy()
    before = calibration(probabilities(logits, act).numpy(), y_np)
    after = calibration(probabilities(logits / t, act).numpy(), y_np)
    # the weights, predictions.npz and the rest of best/ stay as they are
    run.update_best_json(CONFIG_FILE, lambda meta: meta["config"].__setitem__("temperature", t))
    c = Calibration(t, fitted_on, len(y_fit), before["ece"], after["ece"],
                    before["max_calibration_error"], after["max_calibration_error"], len(y_np))
    metrics = run.metrics
    if metrics is not None:  # the run's figures say which model they are of
        metrics["calibration"] = {**asdict(c), "note": "ece and max_calibration_error above are "
                                  "of the model before calibration; best/ now holds this "
                                  "temperature"}
        run.write_metrics(metrics)
    return c


def calibration_lines(run_dir, c: Calibration) -> list[str]:
    """What `cnnkit calibrate` prints."""
    return [f"Temperature {c.temperature:.4f}, fitted on {c.fitted_on}: {c.fit_images:,} "
            "images",
            f"Test split ({c.test_images:,} images): expected calibration error "
            f"{c.ece_before:.4f} -> {c.ece_after:.4f}, maximum calibration error "
            f"{c.max_error_before:.4f} -> {c.max_error_after:.4f}; no prediction's class changes",
            f"Stored in {Path(run_dir) / 'best' / 'model.json'}: predict, evaluate, serve and "
            "export apply it",
            "report.md and report.html show the figures before calibration; metrics.json's "
            "\"calibration\" holds both"]
