"""The server beside hostile clients: a well-behaved client's p50/p99 of `POST /api/predict`
alone (the baseline) and then beside idle and slow connections, side by side, with the ratios.

    .venv/bin/python bench/bench_serve_load.py [--idle 4000] [--slow 400] [--requests 500]

One `cnnkit serve MODEL --port 0` process on 127.0.0.1 (`--max-connections` set above what the
phases hold, `--header-timeout 120` so none is closed while measured). Phases:
- alone: the good client by itself (one keep-alive connection, `--requests` in a row);
- held: `--idle` idle connections (50 from each loopback address 127.2.x.y, under the
  per-client cap) and `--slow` clients each sending a request head a byte at a time (one address each,
  127.0.3.x / 127.0.4.x), all held by the server, while the good client sends its requests;
- one address: `--idle` idle connections from 127.0.0.2 alone: the per-client cap (64) answers
  all but 64 with a 503 at once, and the good client sends its requests.
The server's open descriptors are read from /proc while the good client runs. The client side
needs ~(idle + slow) descriptors: the script raises its own soft limit.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import digit_png, load  # noqa: E402
from common import machine_line, warn_if_loaded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def start(model: str, max_connections: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", model, "--port", "0",
                             "--runtime", "torch", "--max-connections", str(max_connections),
                             "--header-timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if " at http://" not in line:
        proc.kill()
        sys.exit(f"cnnkit serve did not start: {line}{proc.stderr.read()}")
    return proc, int(line.split(" at http://")[1].split("/")[0].rsplit(":", 1)[1])


def hold(port: int, idle_from, slow_from) -> tuple[list, threading.Event]:
    """Open idle connections from `idle_from` addresses and slow ones from `slow_from`; the
    slow ones get a byte of a request head every 50 ms until the event is set."""
    target = ("127.0.0.1", port)
    idle = [socket.create_connection(target, source_address=(a, 0)) for a in idle_from]
    slow = [socket.create_connection(target, source_address=(a, 0)) for a in slow_from]
    stop = threading.Event()
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()

    def dribble():
        i = 0
        while not stop.is_set():
            for c in slow:
                try:
                    c.send(head[i:i + 1] or b"x")
                except OSError:
                    pass
            i += 1
            stop.wait(0.05)
    threading.Thread(target=dribble, daemon=True).start()
    return idle + slow, stop


def descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="seed003-cnn")
    ap.add_argument("--idle", type=int, default=4000)
    ap.add_argument("--slow", type=int, default=400)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.idle + args.slow + 1024), hard))

    print(machine_line())
    warn_if_loaded()
    body = digit_png()
    proc, port = start(args.model, args.idle + args.slow + 100)
    rows = {}
    try:
        load(port, body, 50, 1)  # warm up
        rows["alone"] = (load(port, body, args.requests, 1), descriptors(proc.pid))
        addresses = max(1, -(-args.idle // 50))  # 50 a client: under the per-client cap
        idle_from = [f"127.2.{a // 250}.{1 + a % 250}" for a in (i % addresses
                                                                 for i in range(args.idle))]
        slow_from = [f"127.{3 + i // 250}.0.{1 + i % 250}" for i in range(args.slow)]
        held, stop = hold(port, idle_from, slow_from)
        time.sleep(0.5)
        rows[f"{args.idle} idle + {args.slow} slow held"] = (
            load(port, body, args.requests, 1), descriptors(proc.pid))
        stop.set()
        for c in held:
            c.close()
        time.sleep(0.5)
        held, stop = hold(port, ["127.0.0.2"] * args.idle, [])
        time.sleep(0.5)
        rows[f"{args.idle} idle from one address"] = (
            load(port, body, args.requests, 1), descriptors(proc.pid))
        stop.set()
        for c in held:
            c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    base = rows["alone"][0]
    print(f"good client: {args.requests} POST /api/predict in a row, one keep-alive connection")
    print(f"{'phase':<34} {'p50 ms':>8} {'p99 ms':>8} {'p99 ratio':>9} {'errors':>6} "
          f"{'server fds':>10}")
    for name, (r, fds) in rows.items():
        print(f"{name:<34} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['p99_ms'] / base['p99_ms']:>9.2f} {r['errors']:>6} {fds:>10}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 1 if any(r["errors"] for r, _ in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
