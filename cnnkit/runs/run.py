"""A training run as one library call: `cnnkit.run(RunSpec) -> RunResult`.

Everything that trains goes through here: `cnnkit train`, `cnnkit demo`, the benchmarks,
search trials and cross-validation folds. The order is what keeps a run directory sane:
every value is checked, the data loaded and the model built before anything is written; then
config.json, then one epoch at a time (history.csv, state/ for resume), then the end of the run
(runs/report.py). With `out=None` nothing is written at all.

Run directory (artifacts="full"):
    config.json      the resolved RunSpec under "options" (what recipe and defaults became)
    history.csv      one row per epoch, written as each epoch ends
    state/           the complete training state after the last finished epoch (for resume)
    model/           the model as the run began: what a resume builds (cnnkit.runs.held)
    best/  last/     saved models (lowest validation loss, or the last without validation;
                     last epoch); best/predictions.npz: what report.html shows of its test run
    metrics.json     final and best figures, wall time, samples/s
    curves.png  confusion_matrix.png  mistakes.png  report.md
artifacts="metrics" writes config.json, history.csv, state/, model/ and metrics.json only.
Every file is written atomically, so `kill -9` at any moment leaves a resumable directory.
The names are known to one type, RunDir (cnnkit/io/rundir.py), which reads and writes them.

Your own nn.Module (`RunSpec(model=CNN(), ...)`, or `cnnkit.fit(CNN(), ..., out=...)`) runs the
same way; config.json records {"module": "package.file.CNN"} and its input shape, best/ and
last/ hold its weights (model/module.py), and report.md/report.html describe the module through
its own submodules (look/html_module.py). Resuming, loading or evaluating it needs an instance
of the class again.
"""
from __future__ import annotations

import time

from cnnkit.data import anchored
from cnnkit.errors import CnnkitError
from cnnkit.runs.recipes import get_recipe
from cnnkit.io.rundir import CONFIG, HISTORY, LR_FIND, SKIPPED, TENSORBOARD, RunDir
from cnnkit.runs.held import check_epochs, keep_model, model_to_build, refreeze
from cnnkit.runs.prepare import build_model, check_augment, check_balance, load_splits
from cnnkit.runs.spec import RESUMABLE, RunResult, RunSpec
from cnnkit.train.config import LR_FIND as FIND


def run(spec: RunSpec, resume: bool = False, command: list[str] | None = None,
        callbacks: list | None = None, nproc: int | None = None) -> RunResult:
    """Train, evaluate on the test split, write the run directory (if `spec.out`), and
    return the results. `resume=True` continues the interrupted run in `spec.out`; the
    fields given in `spec` must then agree with the run's own, except RESUMABLE's.
    `command` is recorded in config.json (the CLI's argv).
    `callbacks` are added after the run's own (a search's pruning callback, say); the run's
    results do not depend on them unless they stop training. `nproc=N`: N data-parallel
    processes on this machine (cnnkit.distributed), the same RunResult coming back from rank
    0's; inside a process torchrun started, the run is that process's rank of the whole."""
    if not isinstance(spec, RunSpec):
        raise CnnkitError(f"run() takes a RunSpec; received {type(spec).__name__}")
    module, spec = _take_module(spec)
    from cnnkit.model.provided import provided  # cnnkit.distributed's, above runs

    result = provided("parallel_run")(spec, resume, command, callbacks, module, nproc)
    if result is not None:
        return result
    return execute_run(resolve_run(spec, resume), resume=resume, command=command,
                    extra_callbacks=callbacks, module=module)


def resolve_run(spec: RunSpec, resume: bool) -> RunSpec:
    """The resolved spec of a new run, or of the interrupted run in `spec.out` to continue
    (whose fields `spec` may change only where RESUMABLE allows)."""
    if resume:
        if not spec.out:
            raise CnnkitError("resume needs out: the run directory to continue")
        saved = read_run_spec(spec.out)
        given = {k: v for k, v in spec.explicit().items() if k != "out"}
        wanted = saved.replace(**given)
        diffs = saved.differences(wanted)
        if diffs:
            key = diffs[0].split(":")[0]
            was = getattr(saved, key)
            raise CnnkitError(
                f"{key}={getattr(wanted, key)!r} differs from what {spec.out} was trained with "
                f"({'unset: the default' if was is None else repr(was)}); a run continues as it "
                f"was configured (on resume only "
                f"{', '.join(k for k in RESUMABLE if k != 'out')} may change)",
                option=key, value=getattr(wanted, key))
        absolute = RunDir(spec.out).resolved.get("dataset", {}).get("absolute")
        if absolute and wanted.dataset == saved.dataset:  # a folder:/npz: path as typed then
            wanted = wanted.replace(dataset=absolute)
        return check_epochs(wanted.replace(out=str(spec.out)).resolved())
    return spec.resolved()


def read_run_spec(run_dir) -> RunSpec:
    """The RunSpec a run directory was made with (its config.json), `out` that directory."""
    run = RunDir(run_dir)
    return RunSpec.from_dict(run.options, where=str(run / CONFIG)).replace(out=str(run))


def _take_module(spec: RunSpec):
    """(module or None, spec): a user's nn.Module travels beside the spec, which records its
    class instead (a spec stays JSON-able, and a resumed run can check it is the same class)."""
    import sys

    torch = sys.modules.get("torch")  # a module object means torch is imported already
    if torch is None or not isinstance(spec.model, torch.nn.Module):
        return None, spec
    from cnnkit.model.module import class_path

    return spec.model, spec.replace(model={"module": class_path(spec.model)})


def resume(run_dir, **changes) -> RunResult:
    """Continue the run in `run_dir` exactly where it stopped: `cnnkit.resume("runs/a")`,
    or `cnnkit.resume("runs/a", epochs=20)` to train it for longer."""
    return run(RunSpec(out=str(run_dir), **changes), resume=True)


# -- the run ----------------------------------------------------------------------------------
def make_callbacks(spec: RunSpec, run_dir: RunDir | None, has_val: bool,
                   user_module: bool = False) -> list:
    """A user's module keeps its best epoch in memory and in the state (KeepBest): best/ is
    written at the end, under the module's own names (finish_module_run)."""
    from cnnkit.runs.report import KeepBest
    from cnnkit.train.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoard

    callbacks = []
    if run_dir is not None:
        callbacks.append(CSVLogger(run_dir.path / HISTORY))
    if has_val:
        if run_dir is not None and spec.artifacts == "full" and not user_module:
            callbacks.append(ModelCheckpoint(run_dir.best, monitor="val_loss",
                                             save_best_only=True))
        else:
            callbacks.append(KeepBest(monitor="val_loss"))
        if spec.early_stopping is not None:
            callbacks.append(EarlyStopping(monitor="val_loss", patience=spec.early_stopping,
                                           restore_best_weights=True))
    if spec.tensorboard and run_dir is not None:
        callbacks.append(TensorBoard(run_dir / TENSORBOARD))
    return callbacks


def execute_run(spec: RunSpec, resume: bool, command, extra_callbacks=None,
                module=None, parallel=None) -> RunResult:
    """The run, holding its directory's lock from the first write (or, to resume, from the
    first read of its state) to the last."""
    import contextlib

    from cnnkit.train.threads import kept_threads

    with contextlib.ExitStack() as held:
        held.enter_context(kept_threads())  # the caller's torch threads come back afterwards
        return _execute_held(spec, resume, command, held, list(extra_callbacks or ()), module,
                             parallel)


def _execute_held(spec: RunSpec, resume: bool, command, held, extra_callbacks,
                  module=None, parallel=None) -> RunResult:
    """`parallel`: this process's rank of a data-parallel run (cnnkit.distributed.Parallel);
    only rank 0 writes the run directory and runs the callbacks."""
    import torch

    from cnnkit.runs.backbone import freeze_schedule
    from cnnkit.runs.provenance import ran_on
    from cnnkit.runs.report import data_line, finish_module_run, finish_run, skipped_note
    from cnnkit.train.losses import make_loss
    from cnnkit.kernels.fuse import prepare as prepare_kernels
    from cnnkit.train.memory import keep_freed_memory
    from cnnkit.train.threads import plan_threads
    from cnnkit.train.trainer import Trainer, resolve_device

    t_start = time.perf_counter()
    config = spec.train_config()
    writer = parallel is None or parallel.is_writer
    if parallel is not None:
        config = parallel.configure(spec, config)  # the global batch, from per-process ones
    say = (lambda *a: None) if config.verbose == 0 else print
    from cnnkit.model.module import is_module_description, module_needed

    if module is None and is_module_description(spec.model):
        raise module_needed(f"{spec.out or 'this run'} was trained with", spec.model)
    if module is not None and spec.init_from:
        raise CnnkitError("init_from is for cnnkit's own models; your nn.Module starts from "
                          "the weights it holds (load them before the run)", option="init_from")
    check_augment(spec.augment)
    from cnnkit import kernels

    kernels.mode()  # a bad CNNKIT_KERNELS stops here, before the run directory holds anything
    resolve_device(config.device)  # so does cuda without a GPU: before a resume's lock, too
    run_dir = (RunDir(spec.out) if writer and spec.out is not None and spec.artifacts != "none"
               else None)
    if run_dir is not None and not resume:
        run_dir.check_fresh()
    locked = run_dir is not None and resume
    if locked:
        held.enter_context(run_dir.lock())
    built = model_to_build(spec, resume)  # on resume: the run's own copy (cnnkit.runs.held)
    ds, splits = load_splits(built, module)
    torch.manual_seed(config.seed)  # the initial weights too come from the run's seed
    model, note = build_model(built, ds, module)
    refreeze(model, spec, built)
    phases = freeze_schedule(spec, model, parallel)  # a backbone's: before the optimizer
    # compiled here if need be, before training (never in a forward pass): cnnkit.kernels
    kernels_used, kernel_layers = prepare_kernels(model.net, config.device, config.precision,
                                                  say)
    state_dir = run_dir.state_dir if run_dir is not None else None
    if resume and writer:
        run_dir.recover()
        if not run_dir.started():  # killed (or diverged) before its first epoch was saved
            say(f"{run_dir} has no completed epoch yet: starting it from the beginning")
            resume = False
    load_from = state_dir
    if parallel is not None:  # rank 0's state (or none) on every rank
        load_from = parallel.share_state(state_dir if resume else None)
        resume = load_from is not None
    make_loss(config.loss, ds.num_classes, model.output_activation, config.label_smoothing)
    imbalance = check_balance(config, ds, splits)
    if note:
        say(f"Note: {note}")
    if imbalance and writer:
        say(f"Warning: {imbalance}")
    if spec.recipe and spec.early_stopping is None and splits["val"] is None \
            and get_recipe(spec.recipe).early_stopping is not None:
        say(f"Note: recipe {spec.recipe}'s early stopping is off: the run has no validation data")
    if config.mixup or config.cutmix:  # a mixed image has two labels: say which one counts
        say("Note: with mixup/cutmix, train accuracy counts an image right when the model "
            "predicts its dominant label (the larger share of the mix); validation and test "
            "images are not mixed")
    found = None
    if config.lr == FIND:  # the finder's rate (cnnkit.runs.lr_find), before the first write
        from cnnkit.runs.lr_find import find_lr

        found = find_lr(spec.replace(lr=None), module=module)
        spec, config.lr = spec.replace(lr=found["suggested"]), found["suggested"]
        say(f"Learning rate {found['suggested']:.3g}: the learning-rate finder's suggestion "
            f"({found['steps']} steps)")
    callbacks = [phases] if phases else []  # on every rank: what trains is the same on each
    callbacks += make_callbacks(spec, run_dir, splits["val"] is not None,
                                module is not None) + extra_callbacks if writer else []
    # the device, precision and optimizer are checked here too: before the first write
    trainer = Trainer(model, config, callbacks, state_dir=state_dir, parallel=parallel,
                      governed=True)  # threads and malloc: a run cnnkit started
    if resume:  # a state that does not fit is refused here, before a file is changed
        trainer.load_state(load_from)
        say(f"Resuming {run_dir} after epoch {trainer.epoch}")
    if run_dir is not None:
        run_dir.path.mkdir(parents=True, exist_ok=True)  # only now: every input is checked
        if not locked:  # a new run: lock, then look again (another process may have won)
            held.enter_context(run_dir.lock())
            run_dir.check_fresh(ask_lock=False)
        if resume:
            options = spec.to_options()
            if options["dataset"] == run_dir.resolved.get("dataset", {}).get("absolute"):
                options["dataset"] = run_dir.options["dataset"]  # the path as typed, kept
            run_dir.record_resume(options, command)
        else:
            run_dir.clear_unstarted()
            procs = parallel.local_world if parallel is not None else 1
            run_dir.write_config({
                "options": spec.to_options(), "resolved": {
                    "model_summary": model.summary_dict() | {"layers": None},
                    "model_note": note,
                    # what the resume loads, wherever it is started from (options: as typed)
                    "dataset": {"name": ds.name, "source": ds.source,
                                "absolute": anchored(spec.dataset),
                                "image_shape": ds.image_shape, "class_names": ds.class_names},
                    "splits": {k: (len(v[0]) if v else 0) for k, v in splits.items()},
                    "threads": plan_threads(config.threads, procs).to_dict(),
                    # glibc's malloc: freed memory kept for the next step (cnnkit.train.memory)
                    "malloc": "keep" if keep_freed_memory() else "default",
                    # cnnkit's own kernels, or torch's ops and why (cnnkit.kernels)
                    "kernels": kernels_used,
                    "kernel_layers": kernel_layers,  # {kernel: [layer names]}
                    "processes": parallel.world if parallel is not None else 1,
                    "phases": phases.table if phases else None,  # fine-tuning: what trained when
                    "ran_on": ran_on(ds),  # versions, CPU, git commit, data (runs/provenance)
                    "lr_find": found and {"suggested": found["suggested"],
                                          "steps": found["steps"], "plot": LR_FIND},
                }, "command": command, "started": time.time()})
            if found is not None:
                from cnnkit.look.plots import plot_lr_find
                from cnnkit.train.lr_find import smoothed

                plot_lr_find(found["lrs"], smoothed(found["losses"]), found["suggested"],
                             run_dir / LR_FIND)
            if ds.info.get("skipped"):  # the console (the loader's warning) names a few
                run_dir.write_text(SKIPPED, "".join(f"{f}\n" for f in ds.info["skipped"]))
            keep_model(run_dir, model, module)
    where = f" → {run_dir}" if run_dir is not None else " (in memory)"
    threads = (f", {trainer.threads.plan.threads} threads ({trainer.threads.plan.reason})"
               if trainer.device.type == "cpu" else "")
    own_val = splits["val"] is not None and splits["val"][0] is getattr(ds, "x_val", None)
    say(f"Training {spec.model_label} on {ds.name}: {data_line(ds, splits, spec, own_val)}"
        f"{skipped_note(ds, run_dir)}, precision {trainer.precision}, device {trainer.device}"
        f"{threads}, seed {trainer.seed}{where}")
    x, y = splits["train"]
    xv, yv = splits["val"] if splits["val"] else (None, None)
    t_fit = time.perf_counter()
    history = trainer.fit(x, y, xv, yv)
    fit_time = time.perf_counter() - t_fit
    if not writer:  # the run's results are rank 0's (its run directory, its RunResult)
        return RunResult(spec=spec, metrics={}, history=dict(history.history), model=model,
                         report={}, run_dir=None)
    if trainer.diverged and not (state_dir is not None and run_dir.started()):
        # nothing finite to report, and no saved epoch to go back to
        again = (f"; nothing was saved: the same command (or --resume {run_dir}) starts it "
                 "afresh" if run_dir is not None else "")
        raise CnnkitError(f"{trainer.stop_reason}{again}")
    timing = {"fit_s": fit_time, "start": t_start}
    if module is not None:
        metrics, report = finish_module_run(run_dir, spec, ds, splits, model, trainer, history,
                                            timing, say)
    else:
        metrics, report = finish_run(run_dir, spec, ds, splits, model, trainer, history,
                                     timing=timing, say=say, note=note)
    return RunResult(spec=spec, metrics=metrics, history=dict(history.history), model=model,
                     report=report, run_dir=run_dir.path if run_dir is not None else None)
