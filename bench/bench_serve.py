"""The web server under a bounded load: requests/s, p50 and p99 latency and errors of
`POST /api/predict`, for the torch and onnx runtimes side by side, in one run.

    .venv/bin/python bench/bench_serve.py [--model seed003-cnn] [--requests 2000] [--clients 4]

Each runtime gets its own `cnnkit serve MODEL --runtime R --port 0` process on 127.0.0.1; this
process is the load: `--clients` threads, each with one keep-alive HTTP connection, send
`--requests` in all (after 50 to warm up), each a 28×28 PNG digit as the body (image/png),
and time each answer from its first byte sent to its last byte read. Any answer but a 200 is
an error. The figures include Python's HTTP client on the same CPUs as the server: on a
2-core machine that is a real share of the time (`--clients` past the cores only queues).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, warn_if_loaded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 50


def digit_png() -> bytes:
    """A real handwritten digit (scikit-learn's first '0'), prepared as MNIST's are."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from cnnkit.serve.drawing import prepare_drawing

    image = prepare_drawing(np.rint(load_digits().images[0] * (255 / 16)).astype(np.uint8))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def start_server(model: str, runtime: str, concurrency: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", model, "--port", "0",
                             "--runtime", runtime, "--concurrency", str(concurrency)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if " at http://" not in line:
        proc.kill()
        sys.exit(f"cnnkit serve --runtime {runtime} did not start: {line}{proc.stderr.read()}")
    return proc, int(line.split(" at http://")[1].split("/")[0].rsplit(":", 1)[1])


def load(port: int, body: bytes, requests: int, clients: int) -> dict:
    """Send `requests` from `clients` threads; latencies in ms and the errors seen."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in iter(lambda: next(counter, None), None):  # the shared count: `requests` in all
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException) as e:
                ok, r = False, e
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append((time.perf_counter() - t0) * 1000)
            if not ok:
                with lock:
                    errors.append(getattr(r, "status", repr(r)))
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": len(latencies), "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 1), "p50_ms": round(q[49], 2),
            "p99_ms": round(q[98], 2), "errors": len(errors)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="seed003-cnn",
                    help="what to serve: a run, saved model, preset (default: seed003-cnn; its "
                         "weights do not change the timings)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    ap.add_argument("--runtimes", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--json", action="store_true", help="also print one JSON line of results")
    args = ap.parse_args()

    print(machine_line())
    warn_if_loaded()
    body = digit_png()
    print(f"load: {args.requests} POST /api/predict ({len(body)}-byte PNG) from {args.clients} "
          f"clients (keep-alive), server --concurrency {args.concurrency}, model {args.model}")
    results = {}
    for runtime in args.runtimes:
        proc, port = start_server(args.model, runtime, args.concurrency)
        try:
            load(port, body, WARMUP, args.clients)
            results[runtime] = load(port, body, args.requests, args.clients)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"{'runtime':<8} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for runtime, r in results.items():
        print(f"{runtime:<8} {r['requests_per_s']:>10.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['errors']:>7}")
    if args.json:
        print(json.dumps(results))
    return 1 if any(r["errors"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
