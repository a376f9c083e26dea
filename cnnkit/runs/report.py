"""The end of a run: last and best models, test evaluation, metrics.json, plots, report.md
(what the run's `artifacts` asks for), and KeepBest, the in-memory best model of a run that
writes no best/."""
from __future__ import annotations

import math
import time
from pathlib import Path

from cnnkit.io.rundir import CURVES, RELIABILITY, REPORT_MD, SKIPPED, RunDir
from cnnkit.train.callbacks import Callback


def data_line(ds, splits, spec, own_val: bool) -> str:
    """'1,437 train / 0 validation / 360 test images at 64×64×3': every split the run uses,
    and the images' shape where the run was asked to convert them."""
    n = {k: len(v[0]) if v else 0 for k, v in splits.items()}
    val = f"{n['val']:,} validation"
    if own_val:
        val += " (its validation/ folder" + (f"; val_split={spec.val_split} not used)"
                                            if spec.val_split else ")")
    line = f"{n['train']:,} train / {val} / {n['test']:,} test images"
    if spec.image_size or spec.channels:
        line += f" at {'×'.join(map(str, ds.image_shape))}"
    return line


def skipped_note(ds, run_dir) -> str:
    """'; 2 unreadable files skipped (all in RUN/skipped.txt)': the loader's warning names
    the first few on the console."""
    skipped = ds.info.get("skipped") or []
    if not skipped:
        return ""
    where = f" (all in {run_dir / SKIPPED})" if run_dir is not None else ""
    return f"; {len(skipped):,} unreadable file{'s' * (len(skipped) != 1)} skipped{where}"


def best_epoch(history: dict) -> tuple[int, float | None]:
    """(1-based epoch, val_loss) of the lowest validation loss; the last epoch without one."""
    val = history.get("val_loss") or []
    finite = [(v, i) for i, v in enumerate(val) if v is not None and math.isfinite(v)]
    if not finite:
        return len(history.get("loss", [])), None
    v, i = min(finite)
    return i + 1, v


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class KeepBest(Callback):
    """The weights of the epoch with the lowest `monitor`, kept in memory (and in the training
    state, so a resumed run still knows them): the best model of a run that writes no best/."""

    def __init__(self, monitor: str = "val_loss"):
        self.monitor, self.best, self.weights = monitor, None, None

    def on_epoch_end(self, epoch, logs):
        current = logs.get(self.monitor)
        if current is None or math.isnan(current) or (self.best is not None and current >= self.best):
            return
        self.best = current
        self.weights = {k: v.detach().to("cpu", copy=True)
                        for k, v in self.trainer.model.net.state_dict().items()}

    def get_state(self):
        return {"best": self.best, "weights": self.weights}

    def set_state(self, state):
        self.best, self.weights = state["best"], state["weights"]


def kept_text(best_val: float | None) -> str:
    """Which model a run keeps and reports (metrics.json's "model_kept")."""
    return "best val_loss" if best_val is not None else "last epoch, no validation"


def epoch_text(epoch: int, best_val: float | None) -> str:
    """'best epoch 3', or 'last epoch 4, no validation': the result line says which model."""
    return f"best epoch {epoch}" if best_val is not None else f"last epoch {epoch}, no validation"


def save_last_and_best(run_dir: RunDir, model, trainer, no_validation: bool) -> None:
    """`last/` holds the weights after the final epoch (the state the trainer wrote), `best/`
    the lowest validation loss (written by ModelCheckpoint), or without validation the last
    model again: a resumed run's best/ from its first leg is then out of date."""
    from cnnkit.model.saving import load_state
    from cnnkit.model.graph import model_from_config
    from cnnkit.train.state import read_state

    last = model_from_config(model.get_config())
    last.class_names, last.dataset, last.preprocessing = (model.class_names, model.dataset,
                                                          model.preprocessing)
    weights, _ = read_state(trainer.state_dir)
    load_state(last.net, weights, str(trainer.state_dir))
    last.save(run_dir.last)
    if no_validation or not (run_dir.best / "model.json").is_file():
        last.save(run_dir.best)


def best_weights(run_dir: RunDir | None, trainer) -> dict | None:
    """The best epoch's weights: best/ on disk, else a KeepBest callback's; None means the
    weights the network holds now (no validation: the last epoch is the model)."""
    if run_dir is not None and (run_dir.best / "weights.safetensors").is_file():
        from cnnkit.io.tensors import read_safetensors

        return read_safetensors(run_dir.best / "weights.safetensors")
    keep = next((cb for cb in trainer.callbacks if isinstance(cb, KeepBest)), None)
    return keep.weights if keep is not None else None


def test_predictions(model, trainer, x_test, weights: dict | None):
    """Class probabilities of the best model on the test images (numpy); the model keeps
    the best weights afterwards (it is the run's result)."""
    from cnnkit.model.saving import load_state

    if weights is not None:
        load_state(model.net, weights, "the best epoch's weights")
    logits = trainer.predict_logits(x_test)
    return model.net.probabilities(logits).numpy()


def evaluation_plots(out: Path, x, y, probs, report: dict, class_names,
                     history: dict | None = None) -> None:
    """`confusion_matrix.png`, `reliability.png` (`report`'s calibration) and `mistakes.png`
    (the 16 most confidently wrong images); with
    a run's `history`, `curves.png` too (its best epoch marked, where there is validation)."""
    from cnnkit.look import plots
    from cnnkit.look.metrics import worst_mistakes

    if history is not None:
        epoch, best_val = best_epoch(history)
        plots.plot_history(history, out / CURVES,
                           best_epoch=epoch if best_val is not None else None)
    plots.plot_confusion_matrix(report["confusion_matrix"], class_names, out / "confusion_matrix.png")
    plots.plot_reliability(report, out / RELIABILITY)
    worst = worst_mistakes(probs, y.numpy(), k=16)
    idx = [m[0] for m in worst]
    plots.plot_mistakes(x[idx].numpy(), [m[1] for m in worst], [m[2] for m in worst],
                        [m[3] for m in worst], class_names, out / "mistakes.png")


def finish_run(run_dir: RunDir | None, spec, ds, splits, model, trainer, history, timing, say,
               note: str | None = None, module: bool = False) -> tuple[dict, dict]:
    """Evaluate the best model on the test split and write what `spec.artifacts` asks for.
    Returns (metrics, classification report). `module`: a run of the user's own nn.Module,
    whose best epoch is KeepBest's (best/ of an earlier finish holds the module's own tensor
    names, not the network's) and whose best/ and last/ are written once it is known."""
    import contextlib

    from cnnkit.look.metrics import classification_report
    from cnnkit.train.progress import working

    full = run_dir is not None and spec.artifacts == "full"
    hist = history.history
    epoch, best_val = best_epoch(hist)
    if full and not module:
        save_last_and_best(run_dir, model, trainer, no_validation=best_val is None)
    x_test, y_test = splits["test"]
    probs = test_predictions(model, trainer, x_test,
                             best_weights(None if module else run_dir, trainer))
    report = classification_report(probs, y_test.numpy(), ds.class_names)
    # the result first, the pictures after it: what the user waits for is the test accuracy
    result_s = time.perf_counter() - timing["start"]
    say(f"Test accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f} "
        f"({epoch_text(epoch, best_val)}); {result_s:.1f} s to this result")
    if full and module:
        save_module_last_and_best(run_dir, model, trainer)
    shown = working if trainer.config.verbose else (lambda what: contextlib.nullcontext())
    if full:
        with shown("Drawing the run's pictures (curves, confusion matrix, reliability, mistakes)"):
            evaluation_plots(run_dir, x_test, y_test, probs, report, ds.class_names, hist)

    epoch_times = hist.get("time", [])
    n_train = len(splits["train"][0])
    trained_epochs = len(epoch_times)
    steps = 1 if trainer.config.dry_run else None
    samples = trained_epochs * (min(n_train, trainer.config.batch_size) if steps else n_train)
    metrics = {
        "test_accuracy": report["accuracy"], "test_loss": report["loss"],
        "best_epoch": epoch, "model_kept": kept_text(best_val), "best_val_loss": best_val,
        "best_val_accuracy": (hist["val_accuracy"][epoch - 1] if best_val is not None else None),
        "final_loss": hist["loss"][-1] if hist.get("loss") else None,
        "final_accuracy": hist["accuracy"][-1] if hist.get("accuracy") else None,
        "epochs_run": trained_epochs, "stopped_early": bool(trainer.stop_reason),
        "stop_reason": trainer.stop_reason,
        "result_time_s": result_s, "wall_time_s": time.perf_counter() - timing["start"],
        "train_time_s": sum(epoch_times),
        "samples_per_s": samples / sum(epoch_times) if epoch_times and sum(epoch_times) > 0 else None,
        "peak_rss_mb": _peak_rss_mb(),
        "precision": trainer.precision, "device": str(trainer.device), "seed": trainer.seed,
        "threads": trainer.threads.record(),
        "train_images": n_train, "val_images": len(splits["val"][0]) if splits["val"] else 0,
        "test_images": len(x_test), "per_class": report["per_class"],
        **{k: report[k] for k in ("balanced_accuracy", "macro_f1", "per_class_recall", "ece",
                                  "max_calibration_error")},
    }
    from cnnkit.train.phases import phases_of

    if phases_of(trainer):  # a backbone's fine-tuning: what was frozen when
        metrics["phases"] = phases_of(trainer)
    checkup(run_dir, spec, ds, splits, model, trainer, hist, metrics, note, full, say)
    if run_dir is not None:
        run_dir.write_metrics(metrics)
    if full:
        with shown("Writing report.md and report.html"):
            write_reports(run_dir, spec, ds, splits, model, probs, report, metrics, note, say)
    return metrics, report


def checkup(run_dir, spec, ds, splits, model, trainer, hist, metrics, note, full, say) -> None:
    """metrics.json's "batch_norm" (could its statistics settle, were they recomputed),
    "data_checks" (images per class, near-duplicates across train and test: a run that writes
    its reports) and "doctor" (cnnkit.runs.doctor's findings), each finding said in one line."""
    from cnnkit.runs.doctor import Doctor, data_checks, finding_lines
    from cnnkit.train.optimizers import frozen_norms
    from cnnkit.train.precise_bn import unsettled

    steps = sum(trainer.threads.steps.values()) or metrics["epochs_run"] * math.ceil(
        metrics["train_images"] / trainer.config.batch_size)
    metrics["batch_norm"] = {"steps": steps, "recomputed": trainer.precise_bn, "unsettled": bool(
        unsettled(model.net, frozen_norms(model), steps))}
    if full:
        metrics["data_checks"] = data_checks(splits, ds.num_classes)
    config = run_dir.config if run_dir is not None else {
        "options": spec.to_options(), "resolved": {"model_note": note, "dataset": {
            "class_names": ds.class_names}}}
    path = run_dir.path if run_dir is not None else "RUN"
    metrics["doctor"] = Doctor(path, config, hist, metrics, metrics.get("data_checks")).findings()
    for line in finding_lines(metrics["doctor"]):
        say(f"Doctor: {line}")


def write_reports(run_dir: RunDir, spec, ds, splits, model, probs, report, metrics, note, say):
    """report.md, then the best model's test predictions (best/predictions.npz) and the
    report.html drawn from them, as `cnnkit report RUN` draws it again."""
    from cnnkit.look.html import report_evidence
    from cnnkit.look.metrics import format_report
    from cnnkit.runs.pages import write_report_html

    run_dir.write_text(REPORT_MD, render_report(spec, ds, model, metrics, format_report(report),
                                                note, run_dir.resolved.get("ran_on")))
    evidence = report_evidence(splits, probs, ds.num_classes)
    run_dir.write_predictions(evidence)
    write_report_html(run_dir, model, evidence)
    say(f"Report: {run_dir / REPORT_MD}")


def _threads_text(threads: dict | None) -> str:
    """', CPU threads: 2 for 464 steps, 1 for 5 (auto: ...)' from metrics.json's "threads"."""
    if not threads or not threads.get("used"):
        return ""
    used = sorted(threads["used"].items(), key=lambda kv: -kv[1])
    return (", CPU threads: " + ", ".join(f"{n} for {k:,} steps" for n, k in used)
            + f" ({threads['reason']})")


def balanced_text(figures: dict) -> str:
    """', balanced accuracy 0.9120, macro-F1 0.9105' where the figures hold them."""
    if figures.get("balanced_accuracy") is None:
        return ""
    return (f", balanced accuracy {figures['balanced_accuracy']:.4f}, macro-F1 "
            f"{figures['macro_f1']:.4f}")


def render_report(spec, ds, model, metrics, report_text, note=None, ran_on=None) -> str:
    """report.md; `ran_on`: config.json's record of the software, machine and data."""
    from cnnkit.look.checkup import ran_on_text
    from cnnkit.look.metrics import calibration_text
    from cnnkit.model.summary import format_summary

    if getattr(model, "foreign", False):  # your own nn.Module: its structure, as torch prints it
        from cnnkit.look.html_module import module_text

        summary = module_text(model)
    else:
        summary = format_summary(model)

    tc = spec.train_config().to_dict()
    lines = [
        f"# Run report: {spec.model_label} on {ds.name}", "",
        f"- recipe: {spec.recipe or '(none)'}",
        f"- data: {ds.name} from `{ds.source}`, images {'×'.join(map(str, ds.image_shape))}, "
        f"{ds.num_classes} classes; {metrics['train_images']:,} train / "
        f"{metrics['val_images']:,} validation / {metrics['test_images']:,} test",
        f"- training: {tc['optimizer']} (lr {tc['lr'] or 'default'}), loss {tc['loss']}, "
        f"batch {tc['batch_size']}, {metrics['epochs_run']} of {tc['epochs']} epochs, schedule "
        f"{tc['schedule']}, precision {metrics['precision']}, seed {metrics['seed']}"
        + (f", augmentation {tc['augment']}" if tc.get("augment") else "")
        + "".join(f", {name} {tc[key]}" for key, name in (("mixup", "mixup"), ("cutmix", "cutmix"),
                  ("random_erasing", "random erasing")) if tc.get(key))
        + (f", weights averaged (EMA, decay {tc['ema']})" if tc.get("ema") else "")
        + (", test-time flips (each test image averaged with its mirror image)"
           if model.test_time_flip else ""),
        f"- time: {metrics['wall_time_s']:.1f} s wall (the test result after "
        f"{metrics.get('result_time_s', metrics['wall_time_s']):.1f} s), {metrics['train_time_s']:.1f} s training, "
        + (f"{metrics['samples_per_s']:,.0f} samples/s" if metrics["samples_per_s"] else "")
        + (f", peak memory {metrics['peak_rss_mb']:,.0f} MiB" if metrics["peak_rss_mb"] else "")
        + _threads_text(metrics.get("threads")),
    ]
    if note:
        lines.append(f"- model: {note}")
    if metrics["stop_reason"]:
        lines.append(f"- stopped: {metrics['stop_reason']}")
    if ran_on:
        lines.append(f"- ran on: {ran_on_text(ran_on)}")
    if metrics.get("doctor") is not None:
        from cnnkit.runs.doctor import finding_lines

        lines += ["", "## Doctor", ""] + [f"- {line}" for line in finding_lines(
            metrics["doctor"])] + ([] if metrics["doctor"] else ["- no problems found"])
    if metrics.get("phases"):
        from cnnkit.train.phases import PHASE_COLUMNS, phase_rows

        lines += ["", "## Fine-tuning phases", "", "| " + " | ".join(PHASE_COLUMNS) + " |",
                  "|" + "---|" * len(PHASE_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in phase_rows(metrics["phases"])]
        if spec.weights != "none":
            lines += ["", "The pretrained backbone's batch norm runs in inference mode "
                      "throughout: its moving statistics stay as loaded."]
    lines += [
        "", "## Test results", "",
        f"**Test accuracy {metrics['test_accuracy']:.4f}**, test loss {metrics['test_loss']:.4f}"
        f"{balanced_text(metrics)} "
        + (f"(model of epoch {metrics['best_epoch']}, best val_loss "
           f"{metrics['best_val_loss']:.4f})" if metrics["best_val_loss"] is not None
           else f"(model of the last epoch {metrics['best_epoch']}, no validation)"),
        "", "```", report_text, "```", "",
        "![confusion matrix](confusion_matrix.png)", "",
        "Most confidently wrong test images:", "", "![mistakes](mistakes.png)", "",
        f"Calibration: {calibration_text(metrics)}; each bar is a confidence bin's accuracy, "
        "a calibrated model's bars reach the diagonal:", "",
        f"![reliability diagram]({RELIABILITY})", "",
        "## Training curves", "", "![loss and accuracy](curves.png)", "",
        "Per-epoch figures: [history.csv](history.csv). Models: `best/`, `last/` "
        "(load with `cnnkit.load(path)`).", "",
        "## Model", "", "```", summary, "```", "",
    ]
    if getattr(model, "foreign", False):
        from cnnkit.look.html_module import NO_CAM, NO_DIAGRAM

        lines += [f"Not in this report: {NO_DIAGRAM}; {NO_CAM}. The filters of its first "
                  "nn.Conv2d and its feature maps are in report.html.", ""]
    return "\n".join(lines)


def finish_module_run(run_dir, spec, ds, splits, model, trainer, history, timing, say):
    """finish_run for a user's module: the same test metrics (metrics.json), then best/ and
    last/ as the module's weights, curves.png, confusion_matrix.png, mistakes.png, report.md
    and report.html (the model described through the module's own submodules:
    cnnkit.look.html_module)."""
    return finish_run(run_dir, spec, ds, splits, model, trainer, history, timing, say,
                      module=True)


def save_module_last_and_best(run_dir: RunDir, model, trainer) -> None:
    """best/ as the model holds it now (test_predictions left the best epoch's weights in
    it), last/ from the training state; the model is the best one again afterwards."""
    from cnnkit.train.state import read_state

    model.save(run_dir.best)
    best = {k: v.clone() for k, v in model.net.state_dict().items()}
    weights, _ = read_state(trainer.state_dir)  # the last epoch's, as the state holds them
    model.net.load_state_dict(weights)
    model.save(run_dir.last)
    model.net.load_state_dict(best)
