"""`cnnkit train --nproc 2` and torchrun running `-m cnnkit train` are the same run."""
import json

import pytest

from cnnkit.cli import main

from _ddp_helpers import CLI_BASE, cli, python


def _rows(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    t = header.index("time")
    return [[v for i, v in enumerate(line.split(",")) if i != t] for line in lines]


def test_nproc_and_torchrun_give_the_same_run(tmp_path):
    import socket

    a = cli(["train", *CLI_BASE, "--epochs", "2", "--nproc", "2", "--out", str(tmp_path / "a")])
    assert a.returncode == 0, a.stderr
    assert a.stdout.count("Epoch 2/2") == 1  # one progress display: rank 0's
    assert "Data-parallel: 2 processes (gloo), global batch 64 (32 per process)" in a.stdout
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    no_threads = CLI_BASE[:CLI_BASE.index("--threads")] + CLI_BASE[CLI_BASE.index("--threads") + 2:]
    b = python(["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "cnnkit",
                "train", *no_threads, "--epochs", "2", "--out", str(tmp_path / "b")])
    assert b.returncode == 0, b.stderr
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["resolved"]["processes"] == 2
    threads = config["resolved"]["threads"]  # torchrun's OMP_NUM_THREADS=1 is not a choice
    assert threads["processes"] == 2 and "OMP_NUM_THREADS" not in threads["reason"]
    if threads["threads"] == 1:  # cores / 2 processes is one here: the same arithmetic
        assert _rows(tmp_path / "b") == _rows(tmp_path / "a")
    assert (tmp_path / "b" / "best" / "model.json").is_file()


def test_help_shows_both_ways_to_start_processes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--nproc N", "--sync-bn", "--batch-size-per-process B", "--scale-lr",
                 "--warmup-epochs E"):
        assert flag in text
    assert "torchrun --nnodes 2 --nproc-per-node 4 --rdzv-endpoint HOST:PORT -m cnnkit train" \
        in text


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc 0 is out of range; valid: an integer >= 1"),
    (["--nproc", "100000"], "--nproc 100000 is more than this machine runs at once: "),
    (["--nproc", "2", "--batch-size-per-process", "16", "--batch-size", "64"], "are both given"),
    (["--nproc", "2", "--warmup-epochs", "1"], "--warmup-epochs 1 warms up to the scaled"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    i = CLI_BASE.index("--batch-size")
    base = CLI_BASE[:i] + CLI_BASE[i + 2:]
    assert main(["train", *base, "--epochs", "1", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()
