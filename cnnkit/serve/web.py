"""`cnnkit export --format web`: a folder any static host serves, classifying in the browser.

The folder holds index.html, the page's script and style (the bars of `cnnkit serve`'s page),
model.onnx (exported and checked as `cnnkit export` does), model.json (class names, input shape,
test accuracy) and onnxruntime-web's WebAssembly build, copied from its npm package, which
`make setup` vendors (no CDN: the page loads nothing from elsewhere).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from cnnkit.errors import CnnkitError

ORT_WEB_VERSION = "1.31.1"
# the WebAssembly-only build and the one runtime it loads (SIMD; threads unused, see site.js)
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE = Path(__file__).parent


def ort_web_dir() -> Path:
    """onnxruntime-web's dist/ folder: $CNNKIT_ORT_WEB, else where `make setup` put it."""
    env = os.environ.get("CNNKIT_ORT_WEB")
    folder = Path(env) if env else (Path(sys.prefix) / "share" / "cnnkit-ort-web" / "node_modules"
                                    / "onnxruntime-web" / "dist")
    missing = [f for f in ORT_FILES if not (folder / f).is_file()]
    if missing:
        raise CnnkitError(f"onnxruntime-web's files are not in {folder} ({missing[0]} missing); "
                          f"`make setup` installs them (npm install onnxruntime-web@"
                          f"{ORT_WEB_VERSION}), or set CNNKIT_ORT_WEB to its dist/ folder")
    return folder


def export_web(model_or_run, out, **onnx_options):
    """Write the static site into the folder `out` (new or empty); the ONNX report back."""
    from cnnkit.fsutil import atomic_dir
    from cnnkit.serve.onnx import export_onnx, open_session

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a folder that is not empty" if out.is_dir() else "a file"
        raise CnnkitError(f"out={str(out)!r} is {what}; valid: a new or empty folder for the "
                          "site", "out", str(out))
    ort_dir = ort_web_dir()
    with atomic_dir(out) as tmp:  # the site appears whole, or not at all
        report = export_onnx(model_or_run, tmp / "model.onnx", **onnx_options)
        _, meta = open_session(tmp / "model.onnx")
        (tmp / "model.json").write_text(json.dumps(
            {k: meta[k] for k in ("name", "class_names", "input_shape", "test_accuracy")}))
        for name in ("index.html", "site.js"):
            shutil.copyfile(PAGE / "site" / name, tmp / name)
        for name in ("bars.js", "style.css"):
            shutil.copyfile(PAGE / "page" / name, tmp / name)
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort_dir / name, tmp / "ort" / name)
    report.path = out / "model.onnx"
    return report
