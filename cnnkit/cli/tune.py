"""`cnnkit tune` (search a space) and `cnnkit cv` (k-fold cross-validation of one run).

Both only turn flags into calls of `cnnkit.tune` / `cnnkit.cross_validate`; Optuna and torch
are imported in the handlers, so `cnnkit --help` does not pay for them.
"""
from __future__ import annotations

import argparse
import copy
import textwrap

# library option -> the flag that sets it, for errors restated in the command line's words
FLAGS = {"trials": "--trials", "jobs": "--jobs", "timeout": "--timeout", "folds": "--folds",
         "heartbeat": "--heartbeat"}


def register(sub) -> None:
    from cnnkit.cli import flags

    p = sub.add_parser(
        "tune", help="search hyper-parameters (grid, random, TPE, GP) on Optuna",
        description=textwrap.fill(
            "Search a space of run options, recipe fields and layer arguments (a YAML, TOML or "
            "JSON file: base, space, objective). Every trial is a run directory under "
            "OUT/trials/; the study writes trials.csv, best.yaml (cnnkit train --config "
            "best.yaml repeats the best trial), history.png, importance.png and report.html. "
            "Run the same command again (or --resume OUT) to continue a study that was "
            "interrupted, even by kill -9.", 80),
        epilog="examples:\n  cnnkit tune space.yaml --sampler tpe --trials 20 --out runs/study\n"
        "  cnnkit tune space.yaml --sampler grid --jobs 2 --out runs/grid\n"
        "  cnnkit tune space.yaml --folds 5 --trials 10 --out runs/cv-study\n"
        "  cnnkit tune --resume runs/study\n"
        "  cnnkit tune space.yaml --storage postgresql://user@db:5432/optuna --study s1 "
        "--out runs/s1   # on each machine",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", nargs="?", metavar="SPACE", help="the search space file")
    p.add_argument("--sampler", default="tpe", help="grid, random, tpe or gp (default: tpe)")
    p.add_argument("--trials", type=int, metavar="N", help="trials in the whole study (default: "
                   "the grid's size for grid, else 20)")
    p.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds "
                   "(running trials finish; default: none)")
    p.add_argument("--folds", type=int, metavar="K", help="score each trial by stratified K-fold "
                   "cross-validation: mean of the folds (default: one run per trial)")
    p.add_argument("--pruner", help="median, hyperband or none: stop unpromising trials "
                   "after an epoch (default: none for --sampler grid, which runs every point "
                   "it is given; median otherwise)")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="worker processes on this "
                   "machine (default: 1)")
    p.add_argument("--storage", metavar="URL", help="an Optuna storage: postgresql://... "
                   "(workers on several machines), journal:PATH, sqlite:///PATH (one worker); "
                   "default: OUT/study.journal. study.json keeps it without its password: "
                   "give it again with --resume, or set $CNNKIT_STORAGE")
    p.add_argument("--study", metavar="NAME", help="the study's name in --storage (default: "
                   "OUT's name)")
    flags.add(p, "--seed", ": the same seed gives the same trial parameters in the same order "
              "(default: random, recorded)", type=int)
    p.add_argument("--out", metavar="DIR", help="the study directory to write (default: "
                   "runs/tune-<space>-<time>)")
    p.add_argument("--resume", metavar="STUDY_DIR", help="continue the study in STUDY_DIR "
                   "with its own settings (--trials, --timeout, --jobs, --storage may be given)")
    p.add_argument("--artifacts", default="metrics", help="what each trial's run writes: "
                   "metrics (config, history, metrics, state, model: enough to resume), full "
                   "(plots and reports too) or none (default: metrics)")
    p.add_argument("--heartbeat", type=float, metavar="S", help="seconds between a running "
                   "trial's heartbeats; a trial silent for 3 of them is re-queued (default: 10)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    from cnnkit.cli.train import add_class_weight_flag, add_image_flags

    g = p.add_argument_group("data (set on the base run of every trial; a balanced sampler: "
                             "sampler: balanced in the space's base)")
    add_image_flags(g)
    add_class_weight_flag(g)
    p.set_defaults(func=cmd_tune)

    # a copy: "resolve" takes the overridden option strings (--out, --artifacts, --folds) off
    # the parent's own actions, which would then show in `cnnkit train --help` as positionals
    train = copy.deepcopy(sub.choices["train"]) if "train" in sub.choices else None
    p = sub.add_parser(
        "cv", help="k-fold cross-validation of one run: per-fold table, mean ± std",
        parents=[train] if train is not None else [], conflict_handler="resolve",
        description=textwrap.fill(
            "Train the run the options describe (the same options as cnnkit train) once per "
            "fold of a stratified k-fold of its training data and print each fold's figures "
            "and their mean ± std. OUT gets fold-1/ ... fold-K/ (minimal run directories "
            "unless --artifacts full), folds.json (metrics and each fold's indices) and "
            "folds.png.", 80),
        epilog="examples:\n  cnnkit cv --model seed003-cnn --dataset digits --folds 5 "
        "--epochs 3\n  cnnkit cv --recipe fast --folds 5 --out runs/cv-fast",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds "
                   "(default: 5)")
    p.add_argument("--artifacts", help="what each fold's run writes: metrics, full or none "
                   "(default: metrics)")
    p.add_argument("--out", metavar="DIR", help="the directory of the folds to write (default: "
                   "runs/cv-<model>-<dataset>-<time>)")
    p.set_defaults(func=cmd_cv)


def restate(e):
    from cnnkit.cli.train import restate as restate_run

    if e.option in FLAGS:
        return e.restated(FLAGS[e.option])
    return restate_run(e)


def cmd_tune(args) -> int:
    from cnnkit.errors import CnnkitError

    try:
        if args.resume:
            given = [f for f, v in (("SPACE", args.space), ("--study", args.study),
                                    ("--folds", args.folds), ("--seed", args.seed),
                                    ("--out", args.out), ("--image-size", args.image_size),
                                    ("--channels", args.channels),
                                    ("--class-weight", args.class_weight),
                                    ("--label-column", args.label_column),
                                    ("--image-root", args.image_root)) if v is not None]
            if given:
                raise CnnkitError(f"{given[0]} cannot be given with --resume: the study "
                                  "continues with its own settings (with --resume: --trials, "
                                  "--timeout, --jobs, --quiet, and --storage: its URL again)")
            from cnnkit.search.study import resume_study

            summary = resume_study(args.resume, n_trials=args.trials, timeout=args.timeout,
                                   jobs=args.jobs, verbose=0 if args.quiet else 1,
                                   storage=args.storage)
        else:
            if not args.space:
                raise CnnkitError("say what to search: cnnkit tune SPACE_FILE (or --resume "
                                  "STUDY_DIR)")
            from cnnkit.search.study import tune

            out = args.out or _default_out(args.space)
            summary = tune(_with_images(args), n_trials=args.trials, folds=args.folds,
                           sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                           timeout=args.timeout, jobs=args.jobs, storage=args.storage,
                           study=args.study, out=out, artifacts=args.artifacts,
                           verbose=0 if args.quiet else 1, heartbeat=args.heartbeat)
    except CnnkitError as e:
        raise restate(e) from None
    if not args.quiet and summary.best_value is not None:
        print(f"Best: {summary.metric} {summary.best_value:.4f} with {summary.best_params}")
    return 0


def _with_images(args):
    """The space file, or its Space with --image-size/--channels/--class-weight (and a
    table's --label-column/--image-root) set on the base run."""
    images = {k: v for k, v in (("image_size", args.image_size), ("channels", args.channels),
                                ("class_weight", args.class_weight),
                                ("label_column", args.label_column),
                                ("image_root", args.image_root)) if v is not None}
    if not images or args.space is None:
        return args.space
    from cnnkit.io.bounded import read_structured
    from cnnkit.search.space import load_space

    from cnnkit.data.balance import read_class_weight

    if "class_weight" in images:  # a file read once here: every trial has its weights
        images["class_weight"] = read_class_weight(images["class_weight"])
    # set on the file's base before the space is checked: its data is loaded (once) with
    # them, and a table whose labels only --label-column names loads at all
    data = read_structured(args.space, what="search space file")
    if isinstance(data, dict) and isinstance(data.get("base") or {}, dict):
        data = {**data, "base": {**(data.get("base") or {}), **images}}
    return load_space(data, where=str(args.space))


def _default_out(space: str) -> str:
    import time
    from pathlib import Path

    return str(Path("runs") / f"tune-{Path(space).stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def cmd_cv(args) -> int:
    from cnnkit.cli.train import spec_from_args, with_default_recipe
    from cnnkit.errors import CnnkitError

    try:
        if getattr(args, "resume", None):
            raise CnnkitError("--resume is for cnnkit train; cnnkit cv continues the folds in "
                              "--out when run again")
        from cnnkit.search.cv import check_folds, cross_validate

        check_folds(args.folds)
        spec = with_default_recipe(spec_from_args(args), args.quiet)
        out = args.out or spec.resolved().default_out().replace("runs/", "runs/cv-", 1)
        result = cross_validate(spec.replace(out=None), folds=args.folds, out=out,
                                artifacts=args.artifacts or "metrics",
                                verbose=0 if args.quiet else 1)
    except CnnkitError as e:
        raise restate(e) from None
    if not args.quiet:
        print(result.table())
        print(f"Folds: {out}/folds.json (each fold's metrics and indices), {out}/folds.png")
    return 0
