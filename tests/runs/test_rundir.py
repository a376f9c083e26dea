"""RunDir is the one reader and writer of a run directory's files (issue 26, item 5): its
file names appear nowhere else in cnnkit, and what it reads says which file is wrong."""
import ast
from pathlib import Path

import pytest

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.io.rundir import RunDir

PACKAGE = Path(cnnkit.__file__).parent
RUN_FILES = {"config.json", "history.csv", "metrics.json", "predictions.npz"}
# Keras's own .keras zip holds a config.json of its own, and so does a timm weights file's
# folder: not a run's
ELSEWHERE = {"config.json": {"model/keras_files.py", "model/keras_writing.py",
                             "model/applications/torch_files.py"}}


def test_only_rundir_names_the_run_files():
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "io/rundir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in RUN_FILES \
                    and rel not in ELSEWHERE.get(node.value, ()):
                found.append(f"{rel}:{node.lineno} {node.value}")
    assert found == []


def test_a_run_read_through_rundir(tmp_path):
    r = cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=2, batch_size=64,
                                  seed=1, verbose=0, val_split=0.2, out=str(tmp_path / "a")))
    run = RunDir(r.run_dir)
    assert run.metrics == r.metrics and run.options["train"]["epochs"] == 2
    assert run.history["val_loss"] == pytest.approx(r.history["val_loss"])
    assert run.resolved["splits"]["test"] == 360 and run.saved_epoch() == 2
    assert run.test_accuracy() == r.metrics["test_accuracy"]
    assert run.predictions()["probs"].shape == (360, 10)


def test_a_broken_history_names_its_file_and_line(tmp_path):
    (tmp_path / "config.json").write_text('{"options": {}}')
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.5\n2,oops\n")
    with pytest.raises(CnnkitError, match=r"history.csv: line 3 is not numbers"):
        RunDir(tmp_path).history
