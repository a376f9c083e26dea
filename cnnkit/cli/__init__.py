"""The `cnnkit` command.

Start-up must stay fast (`cnnkit --help` under half a second), so this file imports nothing
heavy: each command module registers its argparse sub-parser cheaply and imports torch and
friends inside its handler.

A command module exposes `register(subparsers)`, which adds parsers and sets `func` on each.
Handlers take the parsed `args` and return an exit code (None means 0).

Every error a user can cause ends in one line and exit status 2: a CnnkitError, and an OSError
about one of the user's paths or their disk (`cnnkit: error: runs/a: read-only file system`),
wherever in a command it was raised. Other OS errors are bugs and keep their traceback.

SIGTERM (`kill`, a job scheduler, `timeout`) ends the commands that train as Ctrl+C does: one
line (`cnnkit: interrupted`; for `train`, followed by the command that continues the run:
`; continue it with: cnnkit train --resume runs/a`), exit status 130, and a run or study that
`--resume` continues.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
import threading

# Command modules, in the order their commands appear in `--help`.
COMMAND_MODULES = [
    "cnnkit.cli.models",   # presets, summary
    "cnnkit.cli.data",     # data list / show / augment
    "cnnkit.cli.train",    # train, evaluate, predict
    "cnnkit.cli.lr_find",  # lr-find (train's options)
    "cnnkit.cli.plot_model",  # plot-model
    "cnnkit.cli.inside",   # inspect
    "cnnkit.cli.report",   # report
    "cnnkit.cli.runs",     # runs, compare
    "cnnkit.cli.doctor",   # doctor
    "cnnkit.cli.calibrate",  # calibrate
    "cnnkit.cli.tune",     # tune, cv
    "cnnkit.cli.export",   # export
    "cnnkit.cli.serve",    # serve
    "cnnkit.cli.demo",     # demo
    "cnnkit.cli.cache",    # cache
]


class Parser(argparse.ArgumentParser):
    """argparse's own mistakes (`--epochs x`, an unknown flag) in one line like every other
    error, pointing at --help instead of printing the usage block. A flag is written whole:
    `--epoch` is refused with "did you mean --epochs?" rather than taken as its abbreviation,
    so a command line means the same when a later version adds `--epoch-...`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_suggest(self, message)} (see {self.prog} --help)\n")


def _suggest(parser: argparse.ArgumentParser, message: str) -> str:
    """argparse's message, with the closest valid command where a command is misspelled
    (`cnnkit trian`)."""
    from cnnkit.errors import closest

    bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if bad:
        near = closest(bad[1], re.findall(r"'([^']*)'", bad[2]))
        if near:
            return f"{message}; did you mean {near!r}?"
    return message


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]):
    """The parser of the (sub)command argv names: `cnnkit data show ...` -> data show's."""
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and token in subs[0].choices:
            parser = subs[0].choices[token]
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, with an unknown flag named against the command's own flags: `cnnkit train
    --validation-split 0.2` -> `cnnkit train: error: unrecognized arguments: --validation-split
    0.2; did you mean --val-split? (see cnnkit train --help)`."""
    from cnnkit.errors import closest

    args, extra = parser.parse_known_args(argv)
    if extra:
        command = _command_parser(parser, argv)
        flags = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
        line = f"unrecognized arguments: {' '.join(extra)}"
        for token in extra:
            near = closest(token.split("=", 1)[0], flags) if token.startswith("-") else None
            if near:
                line += f"; did you mean {near}?"
                break
        command.error(line)
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cnnkit",
        description="Build, train, evaluate and explain convolutional image classifiers.",
    )
    from cnnkit import __version__

    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# OS errors a user's disk, mounts, permissions or paths cause. The first set never comes from a
# bug, whatever file it names or none (f.write on a full disk names none); the others count
# when they name a path outside cnnkit and Python's own files. EINVAL, EBADF and such are bugs.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}
PATH_ERRNOS = DISK_ERRNOS | {
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY, errno.EACCES,
    errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO, errno.ETXTBSY, errno.EBUSY}


def os_error_line(e: OSError) -> str | None:
    """`PATH: permission denied` for an OS error the user caused; None for a bug."""
    from cnnkit.fsutil import describe

    if e.errno not in PATH_ERRNOS:
        return None
    # a rename names both paths; the destination is the one the user chose
    path = e.filename2 if e.filename2 is not None and e.errno != errno.ENOENT else e.filename
    if path is None or isinstance(path, int):
        return describe(e) if e.errno in DISK_ERRNOS else None
    path = os.fsdecode(path)
    if e.errno not in DISK_ERRNOS and _ours(path):
        return None
    return f"{path}: {describe(e, path)}"


def _ours(path: str) -> bool:
    """Is `path` inside cnnkit's package or the Python installation (a missing file there is
    a broken install or a bug, not the user's doing)?"""
    import cnnkit

    real = os.path.realpath(path)
    roots = {os.path.dirname(os.path.realpath(cnnkit.__file__))} | {
        os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _fail(message: str) -> int:
    from cnnkit.errors import printable

    print(f"cnnkit: error: {printable(message)}", file=sys.stderr)
    return 2


# Commands that train: SIGTERM interrupts them as Ctrl+C does, through the same code path.
SIGTERM_AS_CTRL_C = ("train", "tune", "cv")


def _ctrl_c(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from cnnkit.errors import CnnkitError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(parser, argv)
    args.argv = argv  # what the user typed, recorded in a run's config.json
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    out = sys.stdout
    strict = getattr(out, "errors", None) == "strict" and hasattr(out, "reconfigure")
    if strict:  # results name the user's files: print undecodable names as their own bytes
        out.reconfigure(errors="surrogateescape")
    import signal
    import threading

    catch_term = (args.command in SIGTERM_AS_CTRL_C
                  and threading.current_thread() is threading.main_thread())
    before = signal.signal(signal.SIGTERM, _ctrl_c) if catch_term else None
    try:
        code = args.func(args)
    except CnnkitError as e:
        return _fail(str(e))
    except KeyboardInterrupt as e:
        # a command that knows how to go on raises it again with that command (cnnkit train)
        then = f"; continue it with: {e.args[0]}" if e.args else ""
        print(f"cnnkit: interrupted{then}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        line = os_error_line(e)
        if line is None:
            raise
        return _fail(line)
    finally:
        if strict:
            out.reconfigure(errors="strict")
        if catch_term:
            signal.signal(signal.SIGTERM, before)
    return int(code or 0)


def entry() -> None:
    """The `cnnkit` command (console script, `python -m cnnkit`): main(), then exit.

    With torch loaded, the interpreter's own teardown (tearing down torch's and matplotlib's
    modules) takes a noticeable part of a short run's overhead after everything is written
    (bench/README.md). So once main() has returned, the exit handlers run and the streams are
    flushed as at a normal exit, and the process leaves without the module teardown. Only when
    no thread of ours is still running: a non-daemon thread keeps the normal exit, which waits
    for it."""
    code = main()
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if "torch" not in sys.modules or others:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()  # logging.shutdown, multiprocessing's and users' handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what a normal exit would ignore too
            pass
    os._exit(code)

