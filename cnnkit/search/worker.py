"""One worker of a study: ask Optuna for a trial, run it as a cnnkit run, tell the result.

Every worker, the in-process one of `--jobs 1` and each child process of `--jobs J` (run as
`python -m cnnkit.search.worker CTX_JSON`), runs `work(ctx)`: the same loop over the same storage.

- A grid is enqueued whole when the study is created (`study.enqueue_trial`, one WAITING trial
  per point), and a grid worker only ever pops that queue: the storage hands each WAITING trial
  to exactly one worker (a row lock in PostgreSQL, the journal's file lock locally), so every
  point runs once however many workers share the study, and the study ends when the queue is
  empty. (Optuna's GridSampler draws points per worker and can repeat one: optuna #2039.)
- Other samplers stop once `n_trials` trials are done, running or queued (counted in the
  storage, so a resumed or a joined study finishes the same budget) and no queued trial is
  left: a trial re-queued after its worker died runs even when it is the budget's last. Each trial's sampler is
  seeded from (seed, trial number): the same --seed gives the same parameters in the same
  order, also after a resume.
- A trial's run directory is `trials/NNNN` of its original number: a trial re-queued after its
  worker died (see storage.py) continues that directory's run from its last finished epoch.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.train.callbacks import Callback
from cnnkit.search.space import HISTORY_METRICS, Param, Space, parse_space

SAMPLERS = ("grid", "random", "tpe", "gp")
PRUNERS = ("median", "hyperband", "none")


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def make_sampler(kind: str, seed: int, number: int, n_startup: int):
    import optuna

    s = (int(seed) * 1_000_003 + int(number)) % 2**32
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=s, n_startup_trials=n_startup)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=s, n_startup_trials=n_startup,
                                         warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=s)  # grid trials are enqueued: never sampled


def make_pruner(kind: str, n_trials: int, epochs: int):
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, n_trials // 4)))
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    return optuna.pruners.NopPruner()


def counted(study) -> int:
    """Trials that use up the budget: done, running, queued, or failed by their own run (a
    trial failed because its worker died is not: its re-queued copy is)."""
    from optuna.trial import TrialState

    keep = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in keep or (t.state == TrialState.FAIL and "error" in t.user_attrs))


def suggest(trial, params: list[Param]) -> dict:
    out = {}
    for p in params:
        low, high = (list(p.values) + [None, None])[:2]
        if p.kind == "choice":
            out[p.name] = trial.suggest_categorical(p.name, p.values)
        elif p.kind in ("int", "log_int"):
            out[p.name] = trial.suggest_int(p.name, low, high, step=int(p.step or 1),
                                            log=p.kind == "log_int")
        else:
            out[p.name] = trial.suggest_float(p.name, float(low), float(high), step=p.step,
                                              log=p.kind == "log_uniform")
    return out


def objective_value(metric: str, direction: str, metrics: dict, history: dict) -> float:
    """A history metric's best epoch (as KerasTuner scores a trial), else metrics.json's."""
    if metric in HISTORY_METRICS:
        values = [v for v in history.get(metric) or [] if v is not None and math.isfinite(v)]
        if not values:
            raise CnnkitError(f"the run logged no {metric}")
        return max(values) if direction == "maximize" else min(values)
    value = metrics.get(metric)
    if value is None or not math.isfinite(value):
        raise CnnkitError(f"the run produced no {metric} ({value})")
    return float(value)


class PruneOnEpoch(Callback):
    """Report each epoch's `metric` to the trial; stop the run when the pruner says so (the
    run's stop_reason, in its metrics.json and report, then says it was pruned)."""

    def __init__(self, trial, metric: str, offset: int = 0):
        self.trial, self.metric, self.offset = trial, metric, offset

    def on_epoch_end(self, epoch, logs):
        name = self.metric if self.metric in logs else self.metric.removeprefix("val_")
        value = logs.get(name)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), self.offset + epoch)
        if self.trial.should_prune():
            self.trainer.stop_training = True
            self.trainer.stop_reason = (f"pruned by the search after epoch {epoch + 1} "
                                        f"({name} {value:.4f})")


def intermediate_metric(space: Space) -> str:
    if space.metric in HISTORY_METRICS:
        return space.metric
    return "val_accuracy" if space.direction == "maximize" else "val_loss"


def trial_spec(space: Space, params: dict, ctx: dict):
    spec = space.apply(params)
    seed = spec.seed if spec.seed is not None else ctx["seed"]
    return spec.replace(seed=seed, verbose=0, artifacts=ctx["artifacts"] if ctx["out"] else "none")


def evaluate(space: Space, spec, trial, ctx: dict, tdir: Path | None) -> dict:
    """Run the trial (its folds, with --folds) and return what trial.json records."""
    from cnnkit.search.cv import fold_record, fold_spec, mean_std, run_or_resume

    metric, folds = intermediate_metric(space), ctx.get("folds")
    prune = ctx["pruner"] != "none"  # no pruner: no per-epoch reports to store

    def pruning(offset=0):
        return [PruneOnEpoch(trial, metric, offset)] if prune else []

    if not folds:
        result = run_or_resume(spec.replace(out=None if tdir is None else str(tdir)), pruning())
        value = objective_value(space.metric, space.direction, result.metrics, result.history)
        reason = result.metrics.get("stop_reason") or ""
        return {"value": value, "pruned": reason.startswith("pruned"), "stop_reason": reason,
                "epochs_run": result.metrics["epochs_run"]}
    base = spec.replace(val_split=0.0, val_from_test=False).resolved()
    records, values = [], []
    for i in range(folds):
        out = None if tdir is None else tdir / f"fold-{i + 1}"
        s = fold_spec(base, folds, i, base.seed, out).replace(
            artifacts=base.artifacts if out is not None else "none")
        result = run_or_resume(s, pruning(offset=i * base.epochs))
        records.append(fold_record(i, result))
        values.append(objective_value(space.metric, space.direction, result.metrics,
                                      result.history))
        reason = result.metrics.get("stop_reason") or ""
        if reason.startswith("pruned"):
            return {"value": values[-1], "pruned": True, "stop_reason": reason,
                    "folds": records, "fold_values": values}
    mean, std = mean_std(values)
    if tdir is not None:
        from cnnkit.search.cv import plot_folds

        plot_folds(records, tdir / "folds.png")
    return {"value": mean, "std": std, "pruned": False, "folds": records, "fold_values": values}


def run_trial(ctx: dict, space: Space, study, trial, heart) -> None:
    from optuna.trial import TrialState

    from cnnkit.search.storage import requeue

    storage = study._storage
    frozen = storage.get_trial(trial._trial_id)
    original = frozen.system_attrs.get("failed_trial")
    number = trial.number if original is None else original
    params = suggest(trial, space.params)
    tdir = Path(ctx["out"]) / "trials" / f"{number:04d}" if ctx["out"] else None
    # one write to the storage, not three: each is a line (and an fsync) in the journal
    trial.set_user_attr("worker", {"dir": f"trials/{number:04d}" if tdir else None,
                                   "host": socket.gethostname(), "pid": os.getpid()})
    record = {"number": trial.number, "retry_of": original, "params": params}
    state, value = TrialState.FAIL, None
    with heart.beating(trial._trial_id):
        t0 = time.time()
        try:
            spec = trial_spec(space, params, ctx)
            if tdir is not None:
                tdir.mkdir(parents=True, exist_ok=True)
            info = evaluate(space, spec, trial, ctx, tdir)
            record.update(info)
            value = info["value"]
            state = TrialState.PRUNED if info["pruned"] else TrialState.COMPLETE
        except CnnkitError as e:
            record["error"] = str(e)
            trial.set_user_attr("error", str(e))
        except (KeyboardInterrupt, SystemExit):
            requeue(study, trial._trial_id)  # the next worker continues its run
            raise
        record["duration_s"] = time.time() - t0
    record["state"] = state.name
    if "std" in record:
        trial.set_user_attr("std", record["std"])
    if tdir is not None:
        _write_record(tdir / "trial.json", record)
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    else:
        study.tell(trial, state=state)


def _write_record(path: Path, record: dict) -> None:
    """trial.json, whole or not at all (a rename), without fsync: it restates what the storage
    holds, and a kill -9 loses nothing the page cache has (the fsyncs were a third of a 1-epoch
    trial's bookkeeping)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def work(ctx: dict, study=None) -> None:
    """Run trials until the grid's queue is empty, the budget is used, or the deadline passes."""
    import optuna

    from cnnkit.search.storage import Heartbeat, open_storage

    quiet_optuna()
    space = parse_space(ctx["space"], ctx["where"])
    if study is None:
        storage = open_storage(ctx["storage"], Path(ctx["out"]), ctx["heartbeat"])
        study = optuna.load_study(study_name=ctx["study"], storage=storage)
    study.pruner = make_pruner(ctx["pruner"], ctx["n_trials"], space.base_spec().resolved().epochs)
    with Heartbeat(study._storage) as heart:
        _loop(ctx, space, study, heart)


def _loop(ctx: dict, space: Space, study, heart) -> None:
    import optuna

    from cnnkit.search.storage import fail_stale

    while ctx["deadline"] is None or time.time() < ctx["deadline"]:
        fail_stale(study)
        if ctx["sampler"] == "grid":
            # the queue only (Study.ask would sample a new point once it is empty)
            trial_id = study._pop_waiting_trial_id()
            if trial_id is None:
                return
            study._thread_local.cached_all_trials = None
            trial = optuna.Trial(study, trial_id)
        else:
            # a re-queued trial (its worker died) is already counted in the budget: when it
            # is the budget's last, it still has to run (ask pops it before sampling)
            if counted(study) >= ctx["n_trials"] and not _waiting(study):
                return
            # the new trial's place in the sequence of sampled trials (a re-queued copy is not
            # sampled): the same seed gives the same parameters, interrupted or not
            place = sum(1 for t in study.get_trials(deepcopy=False)
                        if "failed_trial" not in t.system_attrs and not over_budget(t))
            study.sampler = make_sampler(ctx["sampler"], ctx["seed"], place, ctx["n_startup"])
            trial = study.ask()
            if _beyond_budget(study, trial, ctx["n_trials"]):
                return
        run_trial(ctx, space, study, trial, heart)


def _waiting(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


OVER_BUDGET = "cnnkit:over_budget"


def over_budget(t) -> bool:
    """A trial asked for by a worker that another worker's last trial beat to the budget."""
    return bool(t.system_attrs.get(OVER_BUDGET))


def _beyond_budget(study, trial, n_trials: int) -> bool:
    """Two workers may both see one trial left and both ask: the later trial (numbers are
    given in order by the storage) is closed unrun, marked, and left out of every table, so
    a study runs exactly its budget however many workers share it."""
    from optuna.trial import TrialState

    earlier = sum(1 for t in study.get_trials(deepcopy=False)
                  if t.number < trial.number and not over_budget(t)
                  and (t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                   TrialState.WAITING)
                       or (t.state == TrialState.FAIL and "error" in t.user_attrs)))
    if earlier < n_trials:
        return False
    study._storage.set_trial_system_attr(trial._trial_id, OVER_BUDGET, True)
    study.tell(trial, state=TrialState.FAIL)
    return True


def _die_with_parent() -> None:
    """A child worker must not outlive `cnnkit tune` (its parent holds the study's lock)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's exit is checked per trial
        pass


def main(job: str) -> int:
    """A `--jobs` child: `job` is the study's context as JSON (the parent writes it on stdin)."""
    ctx = json.loads(job)
    _die_with_parent()
    if os.getppid() != ctx.get("parent_pid"):  # the parent died before prctl took effect
        return 1
    if ctx.get("threads"):
        import torch

        torch.set_num_threads(ctx["threads"])
    try:
        work(ctx)
    except CnnkitError as e:
        print(f"cnnkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.stdin.read()))
