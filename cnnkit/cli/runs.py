"""`cnnkit runs [DIR]`: a table of the run directories in DIR; `cnnkit compare RUN RUN ...`:
those runs side by side in one HTML file. The runs are read by cnnkit.runs.pages and drawn by
cnnkit.look.compare."""
from __future__ import annotations

import json
import sys

from cnnkit.look.compare import COLUMNS


def register(sub) -> None:
    p = sub.add_parser("runs", help="list the run directories, studies and "
                       "cross-validations in a folder (default: runs/)",
                       description="One line per run directory in DIR: model (a run of your "
                       "own nn.Module: its class), dataset (marked --limit N when trained on "
                       "the first N images only), epochs run, best validation loss, test "
                       "accuracy, wall time and start date. A run still training (or killed) "
                       "shows as unfinished; a run whose files cannot be read is named on "
                       "stderr and the others still list. Below them, one line per study "
                       "(cnnkit tune) and cross-validation (cnnkit cv) with its best figure.")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR",
                   help="the folder holding run directories (default: runs)")
    p.add_argument("--sort", default="date", metavar="KEY",
                   help=f"one of {', '.join(COLUMNS)} (default: date, oldest first; "
                   "test_accuracy sorts best first, the others ascending)")
    from cnnkit.cli import flags

    flags.add(p, "--json", " instead of a table", action="store_true")
    p.set_defaults(func=runs_command)

    p = sub.add_parser("compare", help="compare runs side by side in one HTML file",
                       description="Training curves overlaid, final metrics and per-class "
                       "accuracy side by side, and the settings that differ, in one "
                       "self-contained HTML file (open it offline, mail it).",
                       epilog="example:\n  cnnkit compare runs/cnn runs/deep --out compare.html")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (two or more)")
    p.add_argument("--out", default="compare.html", metavar="FILE",
                   help="the HTML file to write (default: compare.html)")
    p.set_defaults(func=compare_command)


def runs_command(args) -> int:
    from cnnkit.look.compare import format_groups, format_table, sort_rows
    from cnnkit.runs.pages import list_runs
    from cnnkit.search.listing import group_row

    rows, groups, unreadable = list_runs(args.dir, group_row)
    rows = sort_rows(rows, args.sort)  # checks the key even when there is nothing to sort
    if args.json:
        print(json.dumps({"runs": rows, "studies": groups, "unreadable": unreadable}, indent=2))
        return 0
    if rows:
        print(format_table(rows))
    if groups:
        print(("\n" if rows else "") + format_groups(groups))
    if not rows and not groups:
        print(f"no runs in {args.dir}")
    for bad in unreadable:
        print(f"cnnkit: skipped {bad['error']}", file=sys.stderr)
    return 0


def compare_command(args) -> int:
    from cnnkit.runs.pages import write_comparison

    print(f"Comparison: {write_comparison(args.runs, args.out)}")
    return 0
