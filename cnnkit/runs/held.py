"""What a run directory holds of its own, so that `--resume` needs nothing outside it.

    model/     the model as the run began (a saved model: its description, class names,
               preprocessing and initial weights), written beside config.json. A resume builds
               this copy, from any current directory, whatever became of the file, folder or
               preset that --model named; the weights then come from state/.
    state/     checked before anything is written: its checksums, its history (train/state.py,
               train/resume.py), and the epochs a resume asks for against those already run.

A run of your own nn.Module keeps no copy: its resume needs an instance of the class again
(model/module.py). Runs from before model/ was kept resume from --model as before.
"""
from __future__ import annotations

from cnnkit.errors import CnnkitError
from cnnkit.io.rundir import METRICS, RunDir


def keep_model(run_dir: RunDir, model, module=None) -> None:
    """model/: the model as the run begins (a new run, before its first epoch); none for your
    own nn.Module (`module`), whose class a resume is given again."""
    from cnnkit.model.saving import save_model

    if module is None:
        save_model(model, run_dir.model)


def model_to_build(spec, resume: bool):
    """The spec whose model a run builds: its own, or on resume the copy its directory holds
    (init_from already done: the resumed weights come from its state)."""
    from cnnkit.model.saving import CONFIG_FILE

    copy = RunDir(spec.out).model if resume and spec.out else None
    if copy is None or not (copy / CONFIG_FILE).is_file():
        return spec
    # a backbone's copy holds its pretrained weights and its new head: built as any saved
    # model, while the run's own spec keeps the phases (cnnkit.runs.backbone.freeze_schedule)
    return spec.replace(model=f"saved:{copy}", init_from=None, freeze=None, backbone=None,
                        weights=None)


def refreeze(model, spec, built) -> None:
    """A resumed copy keeps fixed what --freeze fixed when the run began (requires_grad is
    not part of a saved model)."""
    if built is not spec and spec.freeze and spec.backbone is None:  # a backbone's: phases
        from cnnkit.train.transfer import freeze_features

        freeze_features(model)


def check_epochs(spec):
    """`spec` (a resumed run's, resolved), unless it asks for fewer epochs than the run in
    spec.out has already trained: refused before anything is written (it would report "20 of
    5 epochs"); or the run is finished (metrics.json) and `spec` leaves it nothing to train:
    refused too, saying how to train it longer, rather than scoring it and writing its report
    again."""
    import shlex

    run_dir, epochs = RunDir(spec.out), spec.epochs
    state = run_dir.saved_state()
    done = None if state is None else state["epoch"]
    if done is not None and epochs < done:
        raise CnnkitError(f"epochs={epochs}: {spec.out} has already trained {done}; valid: "
                          f"epochs >= {done} (or leave it out: the run finishes as it was "
                          "configured)", option="epochs", value=epochs)
    if done is None or not (run_dir / METRICS).is_file():  # interrupted: something to do
        return spec
    if state["stop_reason"]:
        raise CnnkitError(f"{spec.out} is finished: it stopped after epoch {done} "
                          f"({state['stop_reason']}); there is nothing left to train")
    if epochs <= done:
        more = done + max(1, done // 2)
        raise CnnkitError(f"{spec.out} is finished: all {done} of its epochs are trained; there "
                          f"is nothing left to train. To train it longer: cnnkit train --resume "
                          f"{shlex.quote(str(spec.out))} --epochs {more} (cnnkit.resume("
                          f"{spec.out!r}, epochs={more}))")
    return spec
