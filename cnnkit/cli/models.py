"""`cnnkit presets` and `cnnkit summary MODEL [--explain] [--json]`."""
from __future__ import annotations

import json


def register(sub) -> None:
    from cnnkit.cli import flags

    p = sub.add_parser("presets", help="list the named model architectures")
    flags.add(p, "--json", " instead of a table", action="store_true")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    flags.add(p, "MODEL_OR_RUN")
    p.add_argument("--explain", action="store_true",
                   help="show the output-size and parameter arithmetic behind each row")
    flags.add(p, "--json", " instead of a table", action="store_true")
    p.add_argument("--input-shape", metavar="H,W,C", help="build the model for another input shape "
                   "(presets only)")
    p.set_defaults(func=cmd_summary)


def _presets_rows():
    # Parameter counts come from shape inference alone: no torch needed, so this stays fast.
    from cnnkit.model.presets import PRESETS, create_model

    rows = []
    for preset in PRESETS.values():
        model = create_model(preset.name)
        rows.append({"name": preset.name, "input_shape": list(preset.input_shape),
                     "num_classes": preset.num_classes, "params": model.count_params(),
                     "description": preset.description})
    return rows


def cmd_presets(args) -> int:
    rows = _presets_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'preset':<{width}}  {'input':<11} {'params':>10}  description")
    for r in rows:
        shape = "×".join(map(str, r["input_shape"]))
        print(f"{r['name']:<{width}}  {shape:<11} {r['params']:>10,}  {r['description']}")
    return 0


def _parse_shape(text: str):
    from cnnkit.errors import CnnkitError

    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise CnnkitError(f"--input-shape {text!r}: expected H,W,C such as 28,28,1") from None
    return shape


def cmd_summary(args) -> int:
    from cnnkit.model.resolve import open_model

    if args.input_shape:
        from cnnkit.model.presets import create_model

        model = create_model(args.model, input_shape=_parse_shape(args.input_shape))
    else:
        model, _ = open_model(args.model)
    if args.json:
        print(json.dumps(model.summary_dict(), indent=2))
    else:
        model.summary(explain=args.explain)
    return 0
