"""`cnnkit serve` as a user starts it: a real uvicorn process on 127.0.0.1 that prints its URL
and serves until interrupted, and every mistake on its command line in one line, exit 2."""
import socket
import subprocess
import sys

import httpx

from cnnkit.cli import main


# -- the command ------------------------------------------------------------------------------
def test_cnnkit_serve_prints_its_url_and_serves_until_interrupted(digit_run):
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", str(digit_run.path),
                             "--port", "0", "--runtime", "torch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split("/ ")[0]
        health = httpx.get(f"{url}/healthz", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)

    assert line.startswith("Serving seed003-cnn (torch) at http://127.0.0.1:")
    assert health == {"status": "ok", "model": "seed003-cnn", "runtime": "torch",
                      "in_progress": 0}
    assert proc.returncode == 0 and "Traceback" not in err


def test_sigterm_stops_the_server_as_ctrl_c_does_and_an_upload_in_flight_is_told(digit_run):
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", str(digit_run.path),
                             "--port", "0", "--runtime", "torch"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split(" at ")[1].split("/ ")[0].rsplit(":", 1)[1])
        upload = socket.create_connection(("127.0.0.1", port), timeout=20)
        upload.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "Content-Type: image/png\r\nContent-Length: 5000\r\n\r\n\x89PNG".encode())
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)  # the upload has begun
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    told = b""
    while chunk := upload.recv(4096):
        told += chunk

    assert proc.returncode == 0 and out.splitlines()[-1] == "Stopped."
    assert "Traceback" not in err and "Cancel" not in err
    assert told.startswith(b"HTTP/1.1 503 ") and b'"the server is stopping' in told


def test_cnnkit_serve_says_in_one_line_what_is_wrong(digit_run, tmp_path, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cases = [(["--port", str(port)], "already in use"), (["--host", "no.such.host.invalid"],
             "not an address"), (["--host", "192.0.2.1"], "cannot listen there"),
             (["--port", "70000"], "out of range"), (["--max-upload-mb", "0"], "out of range"),
             (["--header-timeout", "0"], "--header-timeout 0 is out of range"),
             (["--max-connections-per-client", "0"], "out of range"),
             (["--port", "0", "--threads", "100000"], "--threads 100000 is more than this "
              "machine runs at once: "),
             (["--port", "0", "--max-connections", "100000000"],
              "--max-connections 100000000 needs 100000256 open files")]
    try:
        for extra, words in cases:
            assert main(["serve", str(digit_run.path), *extra]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("cnnkit: error: ") and words in err
    finally:
        taken.close()
    assert main(["serve", str(tmp_path / "none"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none" in err


# -- the decoder, fuzzed ------------------------------------------------------------------------
