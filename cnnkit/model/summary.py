"""Keras's `model.summary()` table, as text and JSON, plus the arithmetic behind each row."""
from __future__ import annotations

import sys


def shape_text(shape) -> str:
    return "(None, " + ", ".join(str(s) for s in shape) + ")"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"


def _row(r, graph: bool) -> dict:
    row = {"name": r.name, "type": r.layer.type, "input_shape": _listed(r.input_shape),
           "output_shape": list(r.output_shape), "params": r.params,
           "trainable_params": r.trainable, "macs": r.macs, "config": r.layer.get_config(),
           "explain": r.layer.explain(r.input_shape, r.output_shape)}
    if graph:  # Keras's "Connected to": the layers whose outputs it takes
        row["connected_to"] = list(r.inbound)
    return row


def _listed(shape) -> list:
    """A shape as a list, or a merge layer's list of shapes as a list of lists."""
    return [list(s) for s in shape] if shape and isinstance(shape[0], (list, tuple)) else list(shape)


def summary_dict(model) -> dict:
    infos = model.layer_infos()
    trainable = sum(r.trainable for r in infos)
    frozen = sum(r.non_trainable for r in infos)
    graph = hasattr(model, "inbound")
    return {
        "name": model.name,
        "input_shape": list(model._require_input()),
        "layers": [_row(r, graph) for r in infos],
        "total_params": trainable + frozen,
        "trainable_params": trainable,
        "non_trainable_params": frozen,
        "total_macs": sum(r.macs for r in infos),
        "memory_bytes": 4 * (trainable + frozen),  # float32 weights and statistics
    }


def format_summary(model, explain: bool = False, width: int = 96,
                   show_trainable: bool = False) -> str:
    """The Keras table as plain text (box-drawing like Keras 3), with MACs beside params;
    `show_trainable` adds Keras's "Trainable" column (Y, N for frozen weights, - for none)."""
    d = summary_dict(model)
    names = [f"{layer['name']} ({layer['type']})" for layer in d["layers"]]
    # the first column grows to fit its longest name, so the table's borders stay aligned
    graph = any("connected_to" in layer for layer in d["layers"])
    links = [[f"{n}[0][0]" for n in layer.get("connected_to", [])] or ["-"]
             for layer in d["layers"]]
    cols = [("Layer (type)", max([34] + [len(n) for n in names]), "<"), ("Output Shape", 22, "<"),
            ("Param #", 12, ">"), ("MACs", 14, ">")]
    if graph:
        cols.append(("Connected to", max([20] + [len(t) for ts in links for t in ts]), "<"))
    if show_trainable:
        cols.append(("Trainable", 9, "<"))

    def row(values, left="│", sep="│", right="│"):
        cells = [f" {v:{align}{w}} " for v, (_, w, align) in zip(values, cols)]
        return left + sep.join(cells) + right

    def rule(a, b, c, fill="─"):
        return a + b.join(fill * (w + 2) for _, w, _ in cols) + c

    lines = [f'Model: "{d["name"]}"   input: {shape_text(d["input_shape"])}',
             rule("┏", "┳", "┓", "━"), row([c for c, _, _ in cols], "┃", "┃", "┃"),
             rule("┡", "╇", "┩", "━")]
    for i, (layer, name) in enumerate(zip(d["layers"], names)):
        cells = [name, shape_text(layer["output_shape"]), f"{layer['params']:,}",
                 f"{layer['macs']:,}"]
        flag = "-" if not layer["params"] else "Y" if layer["trainable_params"] else "N"
        lines.append(row(cells + links[i][:1] * graph + [flag] * show_trainable))
        for more in links[i][1:]:  # a merge's other inputs, one per line as Keras prints them
            lines.append(row(["", "", "", "", more, ""]))
        if explain:
            for text in layer["explain"]:
                lines.append("│   " + text)
        if explain and i < len(d["layers"]) - 1:
            lines.append(rule("├", "┼", "┤"))
    lines.append(rule("└", "┴", "┘"))
    lines += [
        f" Total params: {d['total_params']:,} ({_bytes(4 * d['total_params'])})",
        f" Trainable params: {d['trainable_params']:,} ({_bytes(4 * d['trainable_params'])})",
        f" Non-trainable params: {d['non_trainable_params']:,} "
        f"({_bytes(4 * d['non_trainable_params'])})",
        f" Multiply-accumulates per image: {d['total_macs']:,} "
        f"(≈ {6 * d['total_macs'] / 1e6:.1f} MFLOP per training sample)",
    ]
    return "\n".join(lines)


def print_summary(model, explain: bool = False, print_fn=None, show_trainable=False) -> None:
    text = format_summary(model, explain=explain, show_trainable=show_trainable)
    if print_fn is None:
        sys.stdout.write(text + "\n")
    else:
        for line in text.splitlines():
            print_fn(line)
