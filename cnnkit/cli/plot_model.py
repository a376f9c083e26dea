"""`cnnkit plot-model MODEL --out model.svg`: the layers drawn, as Keras's plot_model."""
from __future__ import annotations


def register(sub) -> None:
    from cnnkit.cli import flags

    p = sub.add_parser("plot-model", help="draw a model's layers, shapes and parameter counts")
    flags.add(p, "MODEL_OR_RUN")
    p.add_argument("--out", metavar="FILE", help="the diagram to write: FILE.svg or FILE.png "
                   f"(default: {flags.OUT_ROOT}/plot-model-<model>.png)")
    p.set_defaults(func=cmd_plot_model)


def cmd_plot_model(args) -> int:
    from cnnkit.look.diagram import check_diagram_path, save_model_diagram
    from cnnkit.model.resolve import open_model

    from cnnkit.cli.flags import default_out

    out = args.out or str(default_out("plot-model", args.model, ".png"))
    check_diagram_path(out)  # before loading: a wrong name costs nothing
    model, _ = open_model(args.model)
    print(save_model_diagram(model, out))
    return 0
