"""`cnnkit lr-find`: the learning-rate finder with train's own options (cnnkit.runs.lr_find).
It writes the plot and prints the suggested rate; it trains a throw-away copy of the model and
writes no run directory."""
from __future__ import annotations

import argparse
import textwrap

# train's flags that do not describe the training itself: lr-find writes no run, resumes
# nothing, runs in one process, and the rate is what it finds
NOT_FOR_LR_FIND = ("--out", "--resume", "--folds", "--nproc", "--lr", "--artifacts",
                   "--tensorboard", "--dry-run", "-h")


def register(sub) -> None:
    from cnnkit.cli import flags

    from cnnkit.io.rundir import LR_FIND

    p = sub.add_parser(
        "lr-find", help="suggest a learning rate: a short run with a rising rate",
        description=textwrap.fill(
            "Trains a throw-away copy of the model that `cnnkit train` would train with the "
            "same options, for at most 100 steps, its learning rate rising exponentially from "
            "1e-7 to 10 (stopping once the loss blows up), then draws the smoothed loss "
            "against the rate and prints the rate where the loss falls fastest (as fastai's "
            "lr_find). Nothing else is written. `cnnkit train --lr find` does the same first "
            "and trains at that rate.", 80),
        epilog="example:\n  cnnkit lr-find --model seed003-cnn --dataset digits",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", dest="plot", default=LR_FIND, metavar="FILE",
                   help=f"the plot to write (default: {LR_FIND})")
    flags.add(p, "--json", ' {"suggested", "steps", "plot"} instead of a sentence',
              action="store_true")
    train = sub.choices["train"]  # registered before this module: its options, one list
    for group in train._action_groups[2:]:  # after positional and "options" (-h)
        mine = p.add_argument_group(group.title)
        for action in group._group_actions:
            if not set(action.option_strings) & set(NOT_FOR_LR_FIND):
                mine._add_action(action)
    p.set_defaults(func=lr_find_command, out=None, resume=None, folds=None, nproc=None,
                   lr=None, artifacts=None, tensorboard=None, dry_run=None)


def lr_find_command(args) -> int:
    import json

    from cnnkit.cli.train import restate, spec_from_args, with_default_recipe
    from cnnkit.errors import CnnkitError
    from cnnkit.runs.lr_find import find_lr

    try:
        spec = with_default_recipe(spec_from_args(args), args.quiet or args.json)
        found = find_lr(spec, plot=args.plot)
    except CnnkitError as e:
        raise restate(e) from None
    if args.json:
        print(json.dumps({k: found[k] for k in ("suggested", "steps", "plot")}))
    else:
        print(f"Suggested learning rate: {found['suggested']:.3g} (the loss fell fastest "
              f"there, over {found['steps']} steps); plot: {found['plot']}")
        print(f"Train with it: cnnkit train ... --lr {found['suggested']:.3g}, or --lr find")
    return 0
