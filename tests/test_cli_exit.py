"""The `cnnkit` command leaves without the interpreter's module teardown once its work is done
(cnnkit.cli.entry): what it printed and wrote must all be there, through a pipe, and its exit
code must be main()'s."""
import json
import subprocess
import sys


def _cnnkit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cnnkit", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def test_a_run_through_a_pipe_prints_and_writes_everything(tmp_path):
    out = tmp_path / "run"
    r = _cnnkit("train", "--model", "fast-cnn-dense", "--dataset", "digits", "--epochs", "1",
                "--seed", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == f"Report: {out / 'report.md'}"  # the last line reached the pipe
    result = [i for i, line in enumerate(lines) if line.startswith("Test accuracy ")]
    # the result, then only the doctor's findings (one line each) before the report's path
    assert len(result) == 1 and all(line.startswith("Doctor: ") for line in lines[result[0] + 1:-1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1
    assert (out / "report.html").stat().st_size > 0


def test_the_test_result_is_printed_before_the_report_is_drawn(tmp_path):
    """The user waits for the test accuracy: it reaches the pipe while the pictures and the
    report are still to come, and metrics.json says how long the result took."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "train", "--model", "fast-cnn-dense",
                             "--dataset", "digits", "--epochs", "1", "--seed", "0", "--out",
                             str(out)], stdout=subprocess.PIPE, text=True, bufsize=1)
    seen = None
    for line in proc.stdout:
        if line.startswith("Test accuracy "):
            seen = {p.name for p in out.iterdir()}  # what the run directory holds at that moment
            assert "s to this result" in line
    assert proc.wait(timeout=300) == 0
    assert seen is not None and not {"curves.png", "mistakes.png", "report.html"} & seen
    assert {"curves.png", "mistakes.png", "report.html"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["result_time_s"] < metrics["wall_time_s"]
    result = f"the test result after {metrics['result_time_s']:.1f} s"
    assert result in (out / "report.md").read_text() and result in (out / "report.html").read_text()


def test_a_bad_value_still_exits_2_with_one_line(tmp_path):
    r = _cnnkit("train", "--model", "fast-cnn-dense", "--dataset", "digits", "--epochs", "0",
                "--out", str(tmp_path / "bad"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "epochs" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


def test_an_exit_handler_still_runs(tmp_path):
    """atexit handlers (logging's, a user's in a plugin) run as at a normal exit."""
    marker = tmp_path / "ran"
    code = ("import atexit, pathlib, sys, torch\n"
            f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
            "sys.argv = ['cnnkit', 'presets']\n"
            "from cnnkit.cli import entry\nentry()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "seed003-cnn" in r.stdout and marker.read_text() == "yes"
