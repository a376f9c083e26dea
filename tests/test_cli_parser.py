"""The command line's own parsing: argparse's mistakes are one line like every other error, and
every command's --help lists its flags as flags."""
import subprocess
import sys

import pytest

from cnnkit.cli import main


@pytest.mark.parametrize("argv, line", [
    (["train", "--epochs", "x"],
     "cnnkit train: error: argument --epochs: invalid int value: 'x' (see cnnkit train --help)"),
    (["predict", "m", "a.png", "--threads", "two"], "cnnkit predict: error: argument --threads: "
     "invalid value 'two'; valid: an integer >= 1 or auto (see cnnkit predict --help)"),
    (["train", "--bogus", "1"],
     "cnnkit train: error: unrecognized arguments: --bogus 1 (see cnnkit train --help)"),
    (["cv", "--folds", "y"],
     "cnnkit cv: error: argument --folds: invalid int value: 'y' (see cnnkit cv --help)"),
])
def test_argparse_mistakes_are_one_line_and_exit_2(argv, line, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_train_help_lists_out_artifacts_and_folds_as_flags():
    # cnnkit cv copies train's flags and overrides three: train's own help must keep them
    out = subprocess.run([sys.executable, "-m", "cnnkit", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--out DIR" in out and "--artifacts ARTIFACTS" in out and "--folds K" in out
    assert "\n  out " not in out and "\n  K " not in out


def test_train_help_lists_the_registries_names():
    """The choices the help gives are the registries' own: a name added there is offered here."""
    from cnnkit.runs.recipes import RECIPES
    from cnnkit.train.losses import LOSSES
    from cnnkit.train.optim import SCHEDULES
    from cnnkit.train.optimizers import REGISTRY

    out = subprocess.run([sys.executable, "-m", "cnnkit", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    helps = [" ".join(part.split()) for part in out.split("\n  --")[1:]]  # one flag's help each
    lines = {"--" + h.split()[0]: h for h in helps}
    for flag, names in (("--optimizer", REGISTRY), ("--loss", LOSSES), ("--schedule", SCHEDULES),
                        ("--recipe", RECIPES)):
        assert all(f" {name}" in lines[flag] for name in names), (flag, lines[flag])
    assert "sgd 0.01" in lines["--lr"] and "adam 0.001" in lines["--lr"]
