"""`cnnkit doctor RUN`: what went wrong in a run and the next command to try
(cnnkit.runs.doctor)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("doctor", help="name what went wrong in a run and what to try next",
                       description="Reads RUN (config.json, history.csv, metrics.json) and "
                       "prints one line per finding: its code (diverged, overfit, undertrained, "
                       "bn-unsettled, train-test-gap, imbalanced, duplicates, preset-reshaped, "
                       "threads-dropped), what the figures show, and the next command to try. "
                       "A healthy run has none.",
                       epilog="example:\n  cnnkit doctor runs/cnn --json")
    p.add_argument("run", metavar="RUN", help="a run directory")
    from cnnkit.cli import flags

    flags.add(p, "--json", ' {"run", "findings": [{"code", "message", "next"}]} instead of '
              "sentences", action="store_true")
    p.set_defaults(func=doctor_command)


def doctor_command(args) -> int:
    from cnnkit.runs.doctor import diagnose, finding_lines

    findings = diagnose(args.run)
    if args.json:
        print(json.dumps({"run": args.run, "findings": findings}, indent=2))
    elif findings:
        print("\n".join(finding_lines(findings)))
    else:
        print(f"{args.run}: no problems found")
    return 0
