"""The flags several commands share, said one way: the same name, metavar and opening words of
help wherever they appear (`--threads N|auto` in train, evaluate, predict, export and serve).
A command adds one with `add(parser, "--threads", tail)`: the shared words, then its own.
tests/test_cli_rules.py walks every command's parser and holds them to this table.

Outputs: a command writes under --out, or where its help's `(default: ...)` says; nothing is
written beside an input the user named (`cnnkit evaluate fashion.onnx` writes under runs/).
"""
from __future__ import annotations

import argparse

DATASETS = ("mnist, fashion-mnist, kmnist, cifar10, cifar100, digits, folder:PATH, npz:PATH, "
            "csv:PATH, parquet:PATH or hf:PATH")

# flag (or a positional's metavar) -> (metavar, the help's opening words)
SHARED = {
    "--threads": ("N|auto", "CPU threads"),
    "--runtime": ("torch|onnx|auto", "what computes predictions: torch (eager PyTorch) or onnx "
                                     "(onnxruntime, CPU)"),
    "--dataset": ("DATASET", f"a dataset: {DATASETS}"),
    "DATASET": ("DATASET", f"a dataset: {DATASETS}"),
    "--data-dir": ("DIR", "where the dataset's files are looked for first"),
    "MODEL_OR_RUN": ("MODEL_OR_RUN", None),  # None: cnnkit.model.resolve.HELP, whole
    "--json": (None, "print JSON"),
    "--seed": ("N", "random seed"),
}

# --out names a folder or a file; its help says where the command writes without it
OUT_METAVARS = ("DIR", "FILE", "FILE|DIR")

# where a command that makes pictures writes them when --out is not given
OUT_ROOT = "runs"


def default_out(command: str, model: str, then: str = ""):
    """Where `command` writes for a model (or a dataset) when --out is not given:
    runs/<command>-<its name><then> (`cnnkit evaluate fashion.onnx` -> runs/evaluate-fashion,
    `cnnkit data augment folder:photos` -> runs/augment-photos.png), never beside the file or
    folder the user named."""
    from pathlib import Path

    from cnnkit.model.resolve import KINDS, SUFFIXES

    prefix, sep, rest = model.partition(":")
    known = prefix in KINDS or prefix in ("folder", "npz", "csv", "parquet", "hf")  # datasets'
    name = Path((rest if sep and known else model).rstrip("/\\")).name
    if Path(name).suffix.lower() in SUFFIXES:
        name = Path(name).stem
    return Path(OUT_ROOT) / f"{command}-{name or 'model'}{then}"


def help_of(name: str, tail: str = "") -> str:
    metavar, lead = SHARED[name]
    if lead is None:
        from cnnkit.model.resolve import HELP

        lead = HELP
    return lead + tail


def add(p, name: str, tail: str = "", **kwargs) -> argparse.Action:
    """Add the shared flag `name` (or the positional of metavar `name`) to `p`, its help the
    shared words followed by `tail`."""
    metavar, _ = SHARED[name]
    if metavar is not None and kwargs.get("action") not in ("store_true", "store_false"):
        kwargs.setdefault("metavar", metavar)
    if name.startswith("--"):
        return p.add_argument(name, help=help_of(name, tail), **kwargs)
    dest = kwargs.pop("dest", {"MODEL_OR_RUN": "model"}.get(name, name.lower()))
    return p.add_argument(dest, help=help_of(name, tail), **kwargs)


def threads(text: str):
    """--threads N|auto outside training: a count, or None (auto: the command's own choice)."""
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; valid: an integer >= 1 or auto")
    return n
