"""`cnnkit presets` and `cnnkit summary`: output, JSON, errors (exit 2, one line, no traceback)."""
import json
import subprocess
import sys

import pytest

from cnnkit.cli import main


def test_presets_lists_every_seed_model(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, params in [("seed000-first", "54,410"), ("seed003-deep", "1,379,557"),
                         ("seed001-example", "839,107")]:
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert params in line


def test_summary_json_structure(capsys):
    assert main(["summary", "seed002-fashion", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input_shape"] == [28, 28, 1]
    assert d["total_params"] == 333_526 and d["non_trainable_params"] == 0
    assert d["layers"][0] == {**d["layers"][0], "name": "conv2d", "type": "Conv2D",
                              "output_shape": [28, 28, 32], "params": 320}


def test_summary_of_model_file_and_saved_model(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text("input_shape: [8, 8, 1]\nlayers:\n  - Flatten: {}\n  - Dense: {units: 2}\n")
    assert main(["summary", str(path)]) == 0
    assert "Total params: 130" in capsys.readouterr().out
    from cnnkit.model.presets import create_model

    create_model("seed000-first").save(tmp_path / "saved")
    assert main(["summary", str(tmp_path / "saved"), "--explain"]) == 0
    assert "32 × (1 × 3 × 3 + 1) = 320" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["summary", "seed9"], "unknown model 'seed9'"),
    (["summary", "nothing.yaml"], "model file 'nothing.yaml' does not exist"),
])
def test_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_entry_point_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "cnnkit.cli", "summary", "bad-name"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("cnnkit: error: unknown model 'bad-name'")
