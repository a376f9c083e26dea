"""`cnnkit calibrate RUN`: fit a temperature to the run's best model (cnnkit.runs.calibrate)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="make a run's probabilities mean what they say "
                       "(temperature scaling)",
                       description="Fits one temperature T to RUN's best model by minimizing "
                       "the negative log-likelihood of logits / T on the run's validation split "
                       "(without one: 10%% of its training split, said so), stores it in "
                       "RUN/best/model.json, and prints the test split's expected and maximum "
                       "calibration error before and after. predict, evaluate, serve and export "
                       "apply it; no prediction's class changes.",
                       epilog="example:\n  cnnkit calibrate runs/fashion")
    p.add_argument("run", metavar="RUN", help="a finished run directory")
    p.set_defaults(func=calibrate_command)


def calibrate_command(args) -> int:
    from cnnkit.runs.calibrate import calibrate, calibration_lines

    print("\n".join(calibration_lines(args.run, calibrate(args.run))))
    return 0
