"""`cnnkit.tune(space, ...)`: a search over a space, every trial an ordinary cnnkit run.

    summary = cnnkit.tune("space.yaml", n_trials=20, sampler="tpe", out="runs/study")
    summary.best_params, summary.best_value, summary.best_spec
    print(summary.table())

The study directory (`out`):
    study.json       the settings (space, sampler, seed, ...): `--resume` and a re-run read them;
                     a --storage URL without its password (given again to resume: find_url)
    study.journal    Optuna's journal file, the default storage (several local workers share it)
    trials/NNNN/     one run directory per trial (with --folds: fold-1/ ... fold-K/ and folds.png)
    trials.csv  best.yaml  history.png  importance.png  report.html   (report.py)

One `cnnkit tune` per study directory: the parent holds `out/.lock` (the run lock, which the
kernel drops when its holder dies, even by kill -9) and `--jobs J` workers are its children,
killed with it. So when a tune starts and gets the lock, no live worker can hold a trial of the
study's own journal: every trial still RUNNING there is an orphan, failed and re-queued at once,
and its run continues from its last finished epoch. On a shared storage (--storage), workers on
other machines may be alive: their trials are re-queued only after their heartbeat stops.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import CnnkitError, one_of, out_of_range
from cnnkit.search.space import Space, load_space
from cnnkit.search.worker import PRUNERS, SAMPLERS

SETTINGS = "study.json"
DEFAULT_TRIALS = 20
# What may differ when a study is resumed or joined: the budget and how it is spent.
MAY_CHANGE = ("n_trials", "timeout", "jobs", "verbose")


@dataclass
class StudySummary:
    """What `tune` returns: the best trial's parameters, objective value and RunSpec, and every
    trial as a row (number, state, value, params, duration_s, dir)."""

    metric: str
    direction: str
    best_params: dict | None
    best_value: float | None
    best_spec: object
    trials: list[dict] = field(repr=False)
    out: Path | None = None

    def table(self) -> str:
        from cnnkit.search.live import trial_lines

        return "\n".join(trial_lines(self.trials, self.metric))

    def __repr__(self) -> str:
        return (f"StudySummary({self.metric} {self.direction}: best {self.best_value!r} with "
                f"{self.best_params!r}; {len(self.trials)} trials, out={str(self.out) if self.out else None!r})")


def check_options(space: Space, sampler: str, n_trials, folds, pruner: str, jobs, timeout,
                  storage, artifacts: str, out) -> int:
    """Every option, before anything is written; returns the number of trials to run."""
    from cnnkit.runs.spec import ARTIFACTS
    from cnnkit.search.cv import check_folds
    from cnnkit.search.storage import check_url

    if sampler not in SAMPLERS:
        raise one_of("sampler", sampler, SAMPLERS)
    if pruner not in PRUNERS:
        raise one_of("pruner", pruner, PRUNERS)
    if artifacts not in ARTIFACTS:
        raise one_of("artifacts", artifacts, ARTIFACTS)
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int)
                                 or n_trials < 1):
        raise out_of_range("trials", n_trials, "an integer >= 1")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise out_of_range("jobs", jobs, "an integer >= 1")
    from cnnkit.train.cpus import check_count

    check_count("jobs", jobs)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise out_of_range("timeout", timeout, "a number of seconds > 0")
    if folds is not None:
        check_folds(folds)
    if jobs > 1 and out is None:
        raise CnnkitError(f"jobs={jobs} needs out: the study directory its workers share",
                          option="jobs", value=jobs)
    check_url(storage, jobs)
    if sampler == "grid":
        size = space.grid_size()  # a continuous parameter is refused here, in one line
        if size > 10_000:
            raise CnnkitError(f"the grid has {size:,} points; valid: at most 10,000 (use "
                              "--sampler random or tpe for a space this large)")
        if n_trials is not None and size > n_trials:
            raise CnnkitError(f"the grid has {size} points, more than trials={n_trials}; valid: "
                              f"trials >= {size}, or leave it out (a grid runs each point once)",
                              option="trials", value=n_trials)
        return size
    return DEFAULT_TRIALS if n_trials is None else n_trials


def default_pruner(sampler: str) -> str:
    """A grid runs every point it was given, so it prunes only when asked; the other samplers
    stop unpromising trials (median) unless told otherwise."""
    return "none" if sampler == "grid" else "median"


def tune(space, n_trials: int | None = None, folds: int | None = None, sampler: str = "tpe",
         pruner: str | None = None, seed: int | None = None, timeout: float | None = None,
         jobs: int = 1, storage: str | None = None, study: str | None = None, out=None,
         artifacts: str = "metrics", verbose: int = 1, heartbeat: float | None = None
         ) -> StudySummary:
    """Search `space` (a file, its mapping, or a Space) and return the study's summary.

    Every trial is `cnnkit.run(spec)` of the base run with the trial's parameters (a run
    directory `out/trials/NNNN` when `out` is given; in memory otherwise). Run the same call
    again on the same `out` and it resumes: finished trials stay, an interrupted one continues
    from its last finished epoch, and the budget (`n_trials`) is counted over the whole study.
    `pruner`: median, hyperband or none; by default none for a grid, median otherwise."""
    from cnnkit.search.storage import HEARTBEAT_S, open_storage, redacted, repair_journal

    space = load_space(space)
    pruner = default_pruner(sampler) if pruner is None else pruner
    n = check_options(space, sampler, n_trials, folds, pruner, jobs, timeout, storage,
                      artifacts, out)
    out = None if out is None else Path(out)
    name = study or (out.name if out is not None else "cnnkit")
    settings = {"space": space.to_dict(), "where": space.where, "sampler": sampler,
                "n_trials": n, "folds": folds, "pruner": pruner, "seed": seed,
                "storage": redacted(storage), "study": name, "artifacts": artifacts,
                "heartbeat": float(heartbeat or HEARTBEAT_S)}
    if out is not None:
        settings = _agree_with_saved(out, settings, seed_given=seed is not None)
    if settings["seed"] is None:
        settings["seed"] = int(time.time_ns() % 2**31)  # recorded, so a resume continues it
    say = print if verbose else (lambda *a, **k: None)
    for line in space.notes:
        say(f"Note: {line}")
    if out is None:
        import optuna

        store = optuna.storages.InMemoryStorage()
        return _run(space, settings, store, None, jobs, timeout, verbose, say, storage)
    if storage is not None:
        store = open_storage(storage, out, settings["heartbeat"])  # unreachable: refused here
    import contextlib

    from cnnkit.fsutil import atomic_write_json
    from cnnkit.io.rundir import RunDir

    if out.exists() and not out.is_dir():
        raise CnnkitError(f"out={str(out)!r} is a file, not a directory; choose another out")
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(RunDir(out).lock(what="study"))
        if storage is None:
            repair_journal(out)
            store = open_storage(None, out, settings["heartbeat"])
        atomic_write_json(out / SETTINGS, settings)  # the latest budget: --resume runs to it
        return _run(space, settings, store, out, jobs, timeout, verbose, say, storage)


def resume_study(out, n_trials: int | None = None, timeout: float | None = None, jobs: int = 1,
                 verbose: int = 1, storage: str | None = None) -> StudySummary:
    """Continue the study in `out` with its own settings (`cnnkit tune --resume DIR`). Its
    study.json keeps a --storage URL without the password: `storage` (or $CNNKIT_STORAGE)
    gives the whole URL again."""
    from cnnkit.search.storage import find_url

    s = read_settings(out)
    return tune(s["space"], n_trials=n_trials or s["n_trials"], folds=s["folds"],
                sampler=s["sampler"], pruner=s["pruner"], seed=s["seed"], timeout=timeout,
                jobs=jobs, storage=find_url(s["storage"], storage), study=s["study"], out=out,
                artifacts=s["artifacts"], verbose=verbose, heartbeat=s["heartbeat"])


def read_settings(out) -> dict:
    from cnnkit.io.bounded import read_bounded

    path = Path(out) / SETTINGS
    if not path.is_file():
        raise CnnkitError(f"{out}: not a study directory (no {SETTINGS})")
    data = read_bounded(path, "json", "study settings", label="corrupt study settings")
    if not isinstance(data, dict) or "space" not in data:
        raise CnnkitError(f"{path}: corrupt study settings")
    return data


def _agree_with_saved(out: Path, settings: dict, seed_given: bool) -> dict:
    """A study directory that holds a study is resumed with its own settings: the same command
    again, or --resume. A different space or sampler there is refused, naming the first."""
    if not out.exists():
        return settings
    if not (out / SETTINGS).is_file():
        if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
            raise CnnkitError(f"{out} exists and is not a study directory; choose another out")
        return settings
    saved = read_settings(out)
    for key in settings:
        if key in MAY_CHANGE or key == "where" or (key == "seed" and not seed_given):
            continue
        if json.dumps(saved.get(key), sort_keys=True) != json.dumps(settings[key], sort_keys=True):
            raise CnnkitError(f"{out} holds a study with another {key} ({saved.get(key)!r}); "
                              f"resume it as it is (cnnkit tune --resume {out}) or choose "
                              "another out")
    return {**settings, "seed": saved["seed"]}


def _open_study(store, settings: dict, space: Space, exclusive: bool):
    """Create the study (enqueueing a grid whole), or join it once its creator is done.
    `exclusive`: no other process can be using the storage (the study's own journal, under
    its lock), so a study left half made by a killed creator is finished here."""
    import optuna

    name = settings["study"]
    try:
        study = optuna.create_study(storage=store, study_name=name, direction=space.direction)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=store)
        if exclusive and "cnnkit:ready" not in study.user_attrs:
            return _make_ready(study, settings, space, skip_if_exists=True)
        deadline = time.time() + 120
        while "cnnkit:ready" not in study.user_attrs:  # its creator is still enqueueing
            if time.time() > deadline:
                raise CnnkitError(f"study {name!r} in --storage was never made ready (its "
                                  "creator died while enqueueing?); choose another --study")
            time.sleep(0.2)
        theirs = study.user_attrs.get("cnnkit:settings", {})
        for key in ("space", "sampler", "folds"):  # the seed is the creator's
            if json.dumps(theirs.get(key), sort_keys=True) != json.dumps(settings[key], sort_keys=True):
                raise CnnkitError(f"study {name!r} was made with another {key} "
                                  f"({theirs.get(key)!r}); join it with the same space and "
                                  "options, or choose another --study")
        settings["seed"] = theirs.get("seed", settings["seed"])
        return study
    return _make_ready(study, settings, space)


def _make_ready(study, settings: dict, space: Space, skip_if_exists: bool = False):
    study.set_user_attr("cnnkit:settings", {k: settings[k] for k in
                                            ("space", "sampler", "folds", "seed", "n_trials")})
    if settings["sampler"] == "grid":
        for point in space.grid():
            study.enqueue_trial(point, skip_if_exists=skip_if_exists)
    study.set_user_attr("cnnkit:ready", True)  # last: joiners wait for it
    return study


def _run(space: Space, settings: dict, store, out: Path | None, jobs: int, timeout, verbose,
         say, url: str | None) -> StudySummary:
    """`url`: the storage's whole URL (settings hold it redacted), for the workers."""
    from cnnkit.search import report
    from cnnkit.search.live import Live
    from cnnkit.search.storage import fail_orphans
    from cnnkit.search.worker import quiet_optuna, work

    quiet_optuna()
    exclusive = out is not None and settings["storage"] is None
    study = _open_study(store, settings, space, exclusive)
    if exclusive:
        again = fail_orphans(study)  # we hold the lock: nobody else can be running these
        if again:
            say(f"Re-queued trial{'s' if len(again) > 1 else ''} "
                f"{', '.join(map(str, again))}, interrupted before: "
                "each continues from its last finished epoch")
    ctx = {**settings, "storage": url, "out": None if out is None else str(out),
           "deadline": None if timeout is None else time.time() + timeout,
           "n_startup": max(2, min(10, settings["n_trials"] // 3)), "parent_pid": os.getpid()}
    live = Live(study, space, enabled=bool(verbose))
    with live:
        if jobs == 1:
            work(ctx, study)
        else:
            _run_children(ctx, jobs)
    if out is not None:
        report.write_study(out, study, space, settings)
        say(f"Study: {out / 'report.html'}; best run: {out / 'best.yaml'}")
    return summarize(study, space, settings, out)


def _run_children(ctx: dict, jobs: int) -> None:
    # the cores shared out: J workers of all-core torch each thrash on a small model
    from cnnkit.train.threads import available_cpus

    threads = max(1, available_cpus() // jobs)
    cmd = [sys.executable, "-m", "cnnkit.search.worker"]
    # each trial's thread plan (cnnkit.train.threads) is then this fixed share
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CNNKIT_THREADS": str(threads)}
    job = json.dumps({**ctx, "threads": threads}).encode()  # on stdin: no command line to parse
    children = []
    for _ in range(jobs):
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        child.stdin.write(job)
        child.stdin.close()
        children.append(child)
    try:
        codes = [c.wait() for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    bad = [c for c in codes if c not in (0,)]
    if bad:
        raise CnnkitError(f"{len(bad)} of {jobs} workers failed (exit status {bad[0]}); "
                          "the study keeps what they finished: run the same command to resume")


def summarize(study, space: Space, settings: dict, out: Path | None = None) -> StudySummary:
    from cnnkit.search.report import best_trial, best_spec, trial_rows

    rows = trial_rows(study)
    best = best_trial(study)
    return StudySummary(metric=space.metric, direction=space.direction,
                        best_params=None if best is None else dict(best.params),
                        best_value=None if best is None else best.value,
                        best_spec=None if best is None else best_spec(space, best, settings),
                        trials=rows, out=out)
