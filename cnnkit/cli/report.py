"""`cnnkit report RUN`: write a run's report.html again (after an upgrade, or for a run that was
stopped before its end), from the run directory alone."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild a run's self-contained report.html",
                       description="RUN is a run directory with a saved model (best/). Its "
                                   "report.html is written again from the directory alone: "
                                   "config.json, history.csv, metrics.json, the best model and "
                                   "its test predictions kept at the end of the run (a run "
                                   "stopped before its end: its best model so far, evaluated "
                                   "on the run's own test split).")
    p.add_argument("run", metavar="RUN", help="a run directory; its report.html is written "
                   "there again")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from cnnkit.train.progress import working
    from cnnkit.runs.pages import write_report_html

    with working(f"Drawing {args.run}'s report.html"):
        page = write_report_html(args.run)
    print(page)
    return 0
