"""`--device cuda` where no GPU is visible is one line and exit 2, and the run directory is
not made (issue 26: it was left holding config.json and .lock). The GPU is hidden from the
child process with CUDA_VISIBLE_DEVICES, so this holds on a machine with one too."""
import os
import subprocess
import sys


def _cnnkit(*args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "cnnkit", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cuda_without_a_gpu_writes_no_run_directory(tmp_path):
    out = tmp_path / "gpu"
    r = _cnnkit("train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", "1",
                "--device", "cuda", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "no CUDA GPU is available" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_cuda_without_a_gpu_starts_no_processes_and_writes_nothing(tmp_path):
    out = tmp_path / "ddp"
    r = _cnnkit("train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", "1",
                "--device", "cuda", "--nproc", "2", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "no CUDA GPU is available" in r.stderr
    assert not out.exists()


def test_resume_on_cuda_without_a_gpu_leaves_the_run_as_it_was(tmp_path):
    out = tmp_path / "run"
    assert _cnnkit("train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", "1",
                   "--limit", "200", "--seed", "1", "--quiet", "--out", str(out)).returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = _cnnkit("train", "--resume", str(out), "--epochs", "2", "--device", "cuda")
    assert r.returncode == 2 and "no CUDA GPU is available" in r.stderr, r.stderr
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
