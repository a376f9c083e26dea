"""Coverage-guided fuzzing of cnnkit's file readers with atheris (libFuzzer for Python).

Each target turns the fuzzer's bytes into the files one public loader reads, starting from
valid files cnnkit writes itself, and checks the one promise every reader makes: it returns
data or raises a one-line CnnkitError. Another exception or a multi-line message is a finding:
its input is saved to the output folder and the run goes on, so one run reports every distinct
finding it meets. An input slower than --timeout (a hang) or RSS past --rss-mb (a huge
allocation) ends the run, with libFuzzer's own timeout-*/oom-* file holding the input.

    make fuzz                                            # every target, briefly
    .venv/bin/python bench/fuzz_readers.py --target npz --seconds 60
    .venv/bin/python bench/fuzz_readers.py --target idx --replay OUT/idx-1-ValueError.bin

atheris comes from bench/requirements-fuzz.txt, never from cnnkit's own requirements.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch  # imported before instrumentation: only cnnkit's own code is instrumented
from PIL import Image

TARGETS = ("idx", "npz", "folder", "model-file", "saved-model", "state", "keras", "onnx")
MODEL = {"input_shape": [4, 4, 1], "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}},
                                              {"Flatten": {}},
                                              {"Dense": {"units": 2, "activation": "softmax"}}]}
MODEL_TOML = """input_shape = [4, 4, 1]
[[layers]]
Conv2D = {filters = 2, kernel_size = 3}
[[layers]]
Flatten = {}
[[layers]]
Dense = {units = 2, activation = "softmax"}
"""
MODEL_YAML = """input_shape: [4, 4, 1]
layers:
  - Conv2D: {filters: 2, kernel_size: 3}
  - Flatten: {}
  - Dense: {units: 2, activation: softmax}
"""
SUFFIXES = (".json", ".yaml", ".toml", ".yml")


# -- inputs: several files in one byte string -----------------------------------------------
def pack(parts: list[bytes]) -> bytes:
    """Each part but the last behind a 4-byte little-endian length; the last takes the rest."""
    return b"".join(struct.pack("<I", len(p)) + p for p in parts[:-1]) + parts[-1]


def unpack(data: bytes, n: int) -> list[bytes]:
    parts = []
    for _ in range(n - 1):
        size = int.from_bytes(data[:4], "little")
        parts.append(data[4:4 + size])
        data = data[4 + size:]
    return parts + [data]


def _image_bytes(fmt: str, mode: str, value: int) -> bytes:
    buf = io.BytesIO()
    size = (4, 3)
    img = Image.new(mode, size, value if mode in ("L", "P") else (value, 255 - value, 7))
    img.save(buf, fmt)
    return buf.getvalue()


def _npz_bytes(compressed: bool, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _dir_bytes(directory: Path, names: tuple[str, ...]) -> bytes:
    return pack([(directory / n).read_bytes() for n in names])


def seeds(target: str, scratch: Path) -> list[bytes]:
    """Small valid inputs, written by cnnkit (or numpy, Pillow) itself."""
    from cnnkit.data.idx import encode_idx

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), np.array([0, 1, 1], np.uint8)
    if target == "idx":
        raw = [encode_idx(x), encode_idx(y)]
        return [pack(raw), pack([gzip.compress(r, mtime=0) for r in raw])]
    if target == "npz":
        return [_npz_bytes(False, x_train=x, y_train=y),
                _npz_bytes(True, x_train=x, y_train=y, x_test=x[:2], y_test=y[:2]),
                _npz_bytes(False, x_train=(x / 255).astype(np.float32), y_train=np.eye(2)[y],
                           class_names=np.array(["cat", "dog"]))]
    if target == "folder":
        images = [_image_bytes(fmt, mode, v) for fmt, mode, v in
                  [("PNG", "L", 0), ("PNG", "RGB", 90), ("BMP", "L", 40), ("GIF", "P", 3),
                   ("JPEG", "RGB", 200), ("TIFF", "L", 9), ("WEBP", "RGB", 60)]]
        return [pack([bytes([0]) + images[0], bytes([1]) + images[1]]),
                pack([bytes([k % 2]) + img for k, img in enumerate(images)])]
    if target == "model-file":
        return [b"\x00" + json.dumps(MODEL).encode(), b"\x01" + MODEL_YAML.encode(),
                b"\x02" + MODEL_TOML.encode()]
    if target == "saved-model":
        from cnnkit.model.sequential import Sequential

        Sequential.from_config(MODEL).save(scratch / "seed-model")
        return [_dir_bytes(scratch / "seed-model", ("model.json", "weights.safetensors"))]
    if target == "state":
        from cnnkit.train.state import write_state

        state = {"epoch": 1, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}},
                 "history": {"loss": [0.5]}, "pair": (1, "x", None)}
        write_state(scratch / "seed-state", {"w": torch.ones(2, 2)}, state)
        return [_dir_bytes(scratch / "seed-state",
                           ("state.json", "state.safetensors", "model.safetensors"))]
    if target in ("keras", "onnx"):
        from cnnkit.model.keras_writing import h5_bytes, keras_bytes
        from cnnkit.model.sequential import Sequential
        from cnnkit.serve.onnx import model_bytes, model_metadata

        model = Sequential.from_config(MODEL)
        if target == "keras":  # the first byte picks the suffix: even .keras, odd .h5
            return [b"\x00" + keras_bytes(model), b"\x01" + h5_bytes(model)]
        return [model_bytes(model, metadata=model_metadata(model, "dynamic", ["a", "b"]))]
    raise SystemExit(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")


# -- one input through one loader ------------------------------------------------------------
class Reader:
    """Calls the target's loader on files made from the input, in a fresh folder each time
    (a reused path with the same size and mtime would hit the folder cache)."""

    def __init__(self, target: str, scratch: Path):
        self.target, self.scratch, self.count = target, scratch, 0

    def fresh(self) -> Path:
        self.count += 1
        here = self.scratch / f"in{self.count % 2}"  # the previous one is removed, not kept
        shutil.rmtree(here, ignore_errors=True)
        here.mkdir()
        return here

    def __call__(self, data: bytes) -> None:
        here = self.fresh()
        getattr(self, self.target.replace("-", "_"))(data, here)

    def idx(self, data: bytes, here: Path) -> None:
        from cnnkit.data.idx import read_idx_header, read_images_labels

        images, labels = unpack(data, 2)
        (here / "images").write_bytes(images)
        (here / "labels").write_bytes(labels)
        read_idx_header(here / "images")
        read_images_labels(here / "images", here / "labels")

    def npz(self, data: bytes, here: Path) -> None:
        from cnnkit.data.npz import load_npz

        (here / "d.npz").write_bytes(data)
        load_npz(here / "d.npz")

    def folder(self, data: bytes, here: Path) -> None:
        from cnnkit.data.folder import load_folder

        flip, rest = data[:4], data[4:]
        for i, part in enumerate(unpack(rest, 8)):
            if part:
                klass = here / "root" / ("ab"[part[0] % 2] + ("/deep" if part[0] & 4 else ""))
                klass.mkdir(parents=True, exist_ok=True)
                (klass / f"{i}.img").write_bytes(part[1:])
        if not (here / "root").is_dir():
            return
        first = load_folder(here / "root")
        # a damaged cache must give back exactly what a fresh decode gave
        cache = Path(first.info["cache"])
        raw = bytearray(cache.read_bytes())
        if len(flip) == 4 and raw:
            offset = int.from_bytes(flip[:3], "little") % len(raw)
            raw[offset] ^= flip[3] or 1
            cache.write_bytes(bytes(raw))
        again = load_folder(here / "root")
        assert torch.equal(first.x_train, again.x_train), "damaged cache gave other pixels"
        assert torch.equal(first.y_train, again.y_train), "damaged cache gave other labels"

    def model_file(self, data: bytes, here: Path) -> None:
        from cnnkit.model.files import load_model_file

        path = here / f"model{SUFFIXES[data[0] % len(SUFFIXES)] if data else '.json'}"
        path.write_bytes(data[1:])
        load_model_file(path)

    def saved_model(self, data: bytes, here: Path) -> None:
        from cnnkit.model.saving import load

        self._write_dir(here / "m", data, ("model.json", "weights.safetensors"))
        load(here / "m")

    def state(self, data: bytes, here: Path) -> None:
        from cnnkit.train.state import read_state

        self._write_dir(here / "s", data, ("state.json", "state.safetensors", "model.safetensors"))
        read_state(here / "s")

    def keras(self, data: bytes, here: Path) -> None:
        from cnnkit.model.keras_files import load_keras_file
        from cnnkit.model.sequential import Sequential

        path = here / ("m.h5" if data[:1] and data[0] % 2 else "m.keras")
        path.write_bytes(data[1:])
        load_keras_file(path, Sequential)

    def onnx(self, data: bytes, here: Path) -> None:
        from cnnkit.serve.onnx import open_session, run_session

        (here / "m.onnx").write_bytes(data)
        session, meta = open_session(here / "m.onnx", threads=1)
        run_session(session, np.zeros((1, *meta["input_shape"]), np.uint8), meta)

    @staticmethod
    def _write_dir(directory: Path, data: bytes, names: tuple[str, ...]) -> None:
        directory.mkdir()
        for name, part in zip(names, unpack(data, len(names))):
            if part != b"\xff":  # lets the fuzzer take a file away
                (directory / name).write_bytes(part)


# -- findings ---------------------------------------------------------------------------------
class Findings:
    """Distinct failures (exception type and the line that raised it), each saved once, and
    listed in findings.jsonl for the parent process (libFuzzer ends its process with exit(),
    so nothing after atheris.Fuzz() would run)."""

    def __init__(self, out: Path, target: str):
        self.out, self.target, self.seen = out, target, set()

    def check(self, reader: Reader, data: bytes) -> None:
        from cnnkit.errors import CnnkitError

        try:
            reader(data)
        except CnnkitError as e:
            if "\n" in str(e) or not str(e):
                self.record(data, "multi-line-CnnkitError", repr(str(e))[:300])
        except Exception as e:  # everything but CnnkitError is what we look for
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            self.record(data, f"{type(e).__name__}@{where}", f"{type(e).__name__}: {e}"[:300])

    def record(self, data: bytes, kind: str, last_line: str) -> None:
        if kind in self.seen:
            return
        self.seen.add(kind)
        name = f"{self.target}-{len(self.seen)}-{kind.split('@')[0]}.bin"
        (self.out / name).write_bytes(data)
        with open(self.out / "findings.jsonl", "a") as f:
            f.write(json.dumps({"kind": kind, "input": name, "bytes": len(data),
                                "last_line": last_line}) + "\n")
        print(f"\nFINDING {kind}: {last_line} ({self.out / name})", flush=True)


def summary(target: str, out: Path, rc: int) -> int:
    """Print what the child found; 1 when it found anything (or libFuzzer stopped on a hang or
    on memory), else 0."""
    found = [json.loads(line) for line in (out / "findings.jsonl").read_text().splitlines()] \
        if (out / "findings.jsonl").is_file() else []
    # libFuzzer's own: timeout-* (a hang), oom-* (RSS past the limit), crash-* (died)
    artifacts = sorted(p.name for p in out.iterdir() if p.name.split("-")[0] in
                       ("timeout", "oom", "crash", "leak", "slow"))
    print(f"\n{target}: {len(found)} distinct finding(s), {len(artifacts)} libFuzzer artifact(s)"
          f", fuzzer exit status {rc}" + (f"; inputs in {out}" if found or artifacts else ""))
    for f in found:
        print(f"  {f['kind']}: {f['last_line']}  [{f['input']}, {f['bytes']} bytes]")
    for name in artifacts:
        print(f"  libFuzzer {name.split('-')[0]}: {out / name}")
    return 1 if found or artifacts or rc not in (0,) else 0


def fuzz(args, scratch: Path, out: Path) -> None:
    """The child: instrument cnnkit, seed the corpus, fuzz until libFuzzer's time is up."""
    import atheris

    with atheris.instrument_imports(include=["cnnkit"]):
        import cnnkit.data.folder  # noqa: F401  (instrumented as imported)
        import cnnkit.data.idx  # noqa: F401
        import cnnkit.data.npz  # noqa: F401
        import cnnkit.io.bounded  # noqa: F401
        import cnnkit.model.files  # noqa: F401
        import cnnkit.model.keras_archive  # noqa: F401
        import cnnkit.model.keras_files  # noqa: F401
        import cnnkit.model.saving  # noqa: F401
        import cnnkit.model.sequential  # noqa: F401
        import cnnkit.serve.onnx  # noqa: F401
        import cnnkit.train.state  # noqa: F401

    corpus = scratch / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(seeds(args.target, scratch)):
        (corpus / f"seed{i}").write_bytes(seed)
    findings = Findings(out, args.target)
    reader = Reader(args.target, scratch)
    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={args.seconds}",
                   f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_mb}",
                   f"-max_len={args.max_len}", f"-artifact_prefix={out}/",
                   "-print_final_stats=1"],
                  lambda data: findings.check(reader, data))
    atheris.Fuzz()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, choices=TARGETS)
    p.add_argument("--seconds", type=int, default=60, help="fuzzing time (default 60)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the inputs of findings and libFuzzer's own artifacts "
                        "(default: a new folder under the system temp dir)")
    p.add_argument("--timeout", type=int, default=10,
                   help="seconds one input may take before libFuzzer calls it a hang (default 10)")
    p.add_argument("--rss-mb", type=int, default=2048,
                   help="RSS limit in MB, past which libFuzzer calls it a huge allocation "
                        "(default 2048)")
    p.add_argument("--max-len", type=int, default=65536, help="longest input (default 65536)")
    p.add_argument("--replay", type=Path, nargs="+", default=None,
                   help="run these saved inputs once each with full tracebacks, and exit")
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child is not None:  # the fuzzing process itself, started below
        os.environ["CNNKIT_DATA"] = str(args.child / "cache")  # never the user's cache
        fuzz(args, args.child, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix=f"cnnkit-fuzz-{args.target}-") as tmp:
        scratch = Path(tmp)
        if args.replay is not None:
            os.environ["CNNKIT_DATA"] = str(scratch / "cache")
            reader = Reader(args.target, scratch)
            for path in args.replay:
                print(f"--- {path}")
                try:
                    reader(path.read_bytes())
                    print("loaded")
                except Exception:
                    traceback.print_exc()
            return 0
        out = args.out or Path(tempfile.mkdtemp(prefix=f"cnnkit-fuzz-{args.target}-findings-"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "findings.jsonl").unlink(missing_ok=True)
        print(f"fuzzing {args.target} for {args.seconds} s; findings go to {out}", flush=True)
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                 "--out", str(out), "--child", str(scratch)]
        rc = subprocess.run(child).returncode
        status = summary(args.target, out, rc)
        if status == 0 and args.out is None:
            shutil.rmtree(out, ignore_errors=True)  # nothing found: no empty folder left behind
        return status


if __name__ == "__main__":
    sys.exit(main())
