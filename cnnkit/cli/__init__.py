"""The `cnnkit` command.

Start-up must stay fast (`cnnkit --help` under half a second), so this file imports nothing
heavy: each command module registers its argparse sub-parser cheaply and imports torch and
friends inside its handler.

A command module exposes `register(subparsers)`, which adds parsers and sets `func` on each.
Handlers take the parsed `args` and return an exit code (None means 0).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order their commands appear in `--help`.
COMMAND_MODULES = [
    "cnnkit.cli.models",   # presets, summary
    "cnnkit.cli.data",     # data list / show / augment
    "cnnkit.cli.train",    # train, evaluate, predict
    "cnnkit.cli.plot_model",  # plot-model
    "cnnkit.cli.inside",   # inspect
    "cnnkit.cli.report",   # report
    "cnnkit.cli.runs",     # runs, compare
    "cnnkit.cli.demo",     # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnkit",
        description="Build, train, evaluate and explain convolutional image classifiers.",
    )
    from cnnkit import __version__

    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a command module not written yet
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cnnkit.errors import CnnkitError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what the user typed, recorded in a run's config.json
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except CnnkitError as e:
        print(f"cnnkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)

