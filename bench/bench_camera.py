"""The webcam in `cnnkit serve`'s page: frames per second the page gets answered, beside the
same frames sent by a plain Python client (the API alone, no browser), in one run.

    .venv/bin/python bench/bench_camera.py [--model seed003-cnn] [--seconds 10]

One `cnnkit serve MODEL --port 0` process on 127.0.0.1. The page runs in Debian's Chromium with
its test camera (--use-fake-device-for-media-stream: a moving 640×480 picture); after the
camera starts and 2 s of warm-up, the page's own counter (answers in its last 2 s) is read once
a second for --seconds. The baseline then posts the page's last frame (a 160-pixel-wide JPEG as a
JSON data URL, as the page sends it) one at a time on one keep-alive connection for --seconds.
The ratio says what the browser's capture, encoding and drawing cost on top of the API.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import start_server  # noqa: E402
from common import machine_line, warn_if_loaded  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def page_fps(url: str, seconds: int) -> tuple[list[float], str]:
    """The page's own frames/s, read once a second; and its last frame as a data URL."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_selector("body[data-ready=true]")
        page.click("#camera")
        page.wait_for_function("() => Number(document.getElementById('fps').dataset.frames) > 5")
        time.sleep(2)
        rates = []
        for _ in range(seconds):
            time.sleep(1)
            rates.append(float(page.get_attribute("#fps", "data-fps")))
        frame = page.evaluate("() => grab.toDataURL('image/jpeg', 0.9)")
        browser.close()
    return rates, frame


def api_fps(port: int, frame: str, seconds: int) -> float:
    """Answers per second for the same frame, one request out at a time."""
    body = json.dumps({"image": frame}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    answered, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.request("POST", "/api/predict?mode=image&top_k=5", body,
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"the API answered {response.status}")
        answered += 1
    return answered / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="seed003-cnn", help="what to serve (default: seed003-cnn)")
    ap.add_argument("--seconds", type=int, default=10, help="seconds of each measurement "
                    "(default: 10)")
    args = ap.parse_args()
    warn_if_loaded()
    print(machine_line())
    proc, port = start_server(args.model, "auto", 2)  # as `cnnkit serve` runs by default
    try:
        rates, frame = page_fps(f"http://127.0.0.1:{port}/", args.seconds)
        api = api_fps(port, frame, args.seconds)
    finally:
        proc.terminate()
        proc.wait(10)
    page = statistics.median(rates)
    print(f"page (Chromium, test camera): median {page:.1f} frames/s "
          f"(min {min(rates):.1f}, max {max(rates):.1f}, read {len(rates)} times)")
    print(f"API alone (Python client, same frame): {api:.1f} frames/s")
    print(f"ratio page / API alone: {page / api:.2f}")
    print(machine_line().split(", ")[-1])  # the load after, beside the one before


if __name__ == "__main__":
    sys.exit(main())
