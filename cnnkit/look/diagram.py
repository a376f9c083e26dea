"""The model drawn: Keras's `plot_model(show_shapes=True)` without graphviz.

An input box, then one box per layer, top to bottom and joined by arrows: its name and type,
its main arguments, the shapes in and out and its parameter count; a footer with the totals.
A graph model's boxes are its layers, input layers included, in the same column: an edge from
one layer to the next is the straight arrow between them, and every other edge (a skip
connection, a merge's second input) a connector routed beside the boxes, in a lane of its own
so that no two overlap.
Every number comes from `summary_dict`, the same one `cnnkit summary --json` prints, so the
picture and the table can never disagree.

The layout is computed once, in pixels, as boxes, lines of text and arrows; two renderers draw
it: SVG written by hand (plain text: it diffs, and the HTML run report inlines it) and PNG by
matplotlib's Agg. Text is monospace, so a line's width is its length times one advance: the
boxes fit their longest label without font metrics, in a browser as in matplotlib.
"""
from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_path, atomic_write_text
from cnnkit.model.summary import shape_text  # "(None, 28, 28, 1)", as the summary table writes it

SUFFIXES = (".svg", ".png")
FONT = "DejaVu Sans Mono"  # matplotlib ships it; browsers fall back to their own monospace
FONT_STACK = f"'{FONT}', Menlo, Consolas, monospace"
ADVANCE = 0.61  # a monospace character's width per pixel of font size (DejaVu: 0.602)
TITLE_SIZE, TEXT_SIZE = 13, 12
PAD_X, PAD_Y, GAP, MARGIN = 14, 9, 30, 20
LANE = 16  # pixels between the lanes of a graph's routed connectors, right of the boxes
ARGS_WIDTH = 88  # characters; longer argument lists (custom layers) wrap
INK, MUTED, EDGE, ARROW = "#202124", "#5f6368", "#80868b", "#5f6368"
FILLS = {"Input": "#ffffff", "Conv2D": "#e8f0fe", "MaxPooling2D": "#e6f4ea",
         "AveragePooling2D": "#e6f4ea", "GlobalAveragePooling2D": "#e6f4ea", "Dense": "#fef7e0"}
OTHER_FILL = "#f1f3f4"

# The arguments that say what a built-in layer does; a layer of the user's own shows its whole
# get_config(), since only its author knows which of its arguments matter.
MAIN_ARGS = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "activation"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "ZeroPadding2D": ("padding",),
    "Flatten": (),
    "GlobalAveragePooling2D": (),
    "Dense": ("units", "activation"),
    "Dropout": ("rate",),
    "BatchNormalization": ("momentum", "epsilon"),
    "Activation": ("activation",),
    "LeakyReLU": ("negative_slope",),
}
SHORT_KEYS = {"kernel_size": "kernel", "pool_size": "pool"}


@dataclass
class Line:
    text: str
    size: int = TEXT_SIZE
    bold: bool = False
    color: str = INK

    @property
    def width(self) -> float:
        return len(self.text) * self.size * ADVANCE

    @property
    def height(self) -> float:
        return round(self.size * 1.45)


@dataclass
class Box:
    name: str
    lines: list[Line]
    fill: str
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


@dataclass
class Layout:
    width: float
    height: float
    boxes: list[Box]
    arrows: list[list[tuple[float, float]]]  # each arrow's points: 2 straight, 4 routed
    captions: list[tuple[float, Line]]  # (baseline y, line): the title and the footer


# -- what each box says ------------------------------------------------------------------------
def _value(value) -> str:
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return f"{value[0]}×{value[1]}"  # kernel 3×3, strides 2×2
    return str(value)


def layer_arguments(layer_type: str, config: dict) -> list[str]:
    """`filters=32, kernel=3×3, ...`, wrapped to lines of at most ARGS_WIDTH characters."""
    keys = MAIN_ARGS.get(layer_type, tuple(config))
    if layer_type in MAIN_ARGS and config.get("use_bias") is False:
        keys += ("use_bias",)  # it changes the parameter count, so say so
    items = [f"{SHORT_KEYS.get(k, k)}={_value(config[k])}" for k in keys if k in config]
    return textwrap.wrap(", ".join(items), ARGS_WIDTH, break_on_hyphens=False)


def _shapes_text(shape) -> str:
    """One shape, or a merge layer's list of them."""
    if shape and isinstance(shape[0], (list, tuple)):
        return ", ".join(shape_text(s) for s in shape)
    return shape_text(shape)


def _is_graph(summary: dict) -> bool:
    return any("connected_to" in layer for layer in summary["layers"])


def _boxes(summary: dict) -> list[Box]:
    boxes = []
    if not _is_graph(summary):  # a Sequential's input is drawn as Keras draws it: a box first
        boxes.append(Box("input_layer", [Line("input_layer (InputLayer)", TITLE_SIZE, bold=True),
                                         Line(shape_text(summary["input_shape"]))], FILLS["Input"]))
    for layer in summary["layers"]:
        lines = [Line(f"{layer['name']} ({layer['type']})", TITLE_SIZE, bold=True)]
        if layer["type"] == "InputLayer":
            boxes.append(Box(layer["name"], lines + [Line(shape_text(layer["output_shape"]))],
                             FILLS["Input"]))
            continue
        args = layer_arguments(layer["type"], layer["config"])
        lines += [Line(text, color=MUTED) for text in args]
        lines += [Line(f"{_shapes_text(layer['input_shape'])} → "
                       f"{shape_text(layer['output_shape'])}"),
                  Line(f"params: {layer['params']:,}")]
        boxes.append(Box(layer["name"], lines, FILLS.get(layer["type"], OTHER_FILL)))
    return boxes


def edges(summary: dict) -> list[tuple[int, int]]:
    """(from box, to box) for every arrow: a chain for a Sequential, each layer's inputs for a
    graph (its boxes are its layers)."""
    if not _is_graph(summary):
        return [(i - 1, i) for i in range(1, len(summary["layers"]) + 1)]
    index = {layer["name"]: i for i, layer in enumerate(summary["layers"])}
    return [(index[src], i) for i, layer in enumerate(summary["layers"])
            for src in layer["connected_to"]]


def _lanes(routed: list[tuple[int, int]]) -> list[int]:
    """A lane per routed edge, the first one free over its whole span of boxes (interval
    colouring: edges that overlap vertically never share a lane)."""
    ends, lanes = [], []  # ends[k]: the last box lane k reaches so far
    for a, b in routed:
        k = next((k for k, end in enumerate(ends) if end < a), len(ends))
        ends[k:k + 1] = [b]
        lanes.append(k)
    return lanes


def _ports(box: Box, count: int, lower: bool) -> list[float]:
    """`count` distinct heights on a box's right side: edges leave from its lower half and
    arrive in its upper half, so an edge out never meets one in."""
    half = box.h / 2
    return [box.y + (half if lower else 0) + half * (m + 1) / (count + 1) for m in range(count)]


def _arrows(boxes: list[Box], pairs: list[tuple[int, int]]) -> tuple[list, int]:
    """Every edge's points, and how many lanes the routed ones take."""
    arrows = [[(b.x + b.w / 2, boxes[i].y + boxes[i].h), (b.x + b.w / 2, b.y)]
              for i, j in pairs if j == i + 1 for b in [boxes[j]]]
    routed = sorted((i, j) for i, j in pairs if j != i + 1)
    lanes = _lanes(routed)
    # ports follow lane order so that connectors nest instead of crossing at a box: the
    # farther a lane, the higher an edge leaves and the lower it arrives
    outs = {i: sorted((lane, j) for (a, j), lane in zip(routed, lanes) if a == i)
            for i, _ in routed}
    ins = {j: sorted((lane, i) for (i, b), lane in zip(routed, lanes) if b == j)
           for _, j in routed}
    for (i, j), lane in zip(routed, lanes):
        src, dst = boxes[i], boxes[j]
        y0 = _ports(src, len(outs[i]), True)[::-1][outs[i].index((lane, j))]
        y1 = _ports(dst, len(ins[j]), False)[ins[j].index((lane, i))]
        x = src.x + src.w + LANE * (lane + 1)
        arrows.append([(src.x + src.w, y0), (x, y0), (x, y1), (dst.x + dst.w, y1)])
    return arrows, max(lanes, default=-1) + 1


def _baseline(top: float, line: Line) -> float:
    """Where a line's text sits when its line box starts at `top`: its glyphs centred in it."""
    return top + (line.height + line.size) / 2 - 2


def layout(model) -> Layout:
    """Boxes stacked top to bottom, all as wide as the widest label, centred in the canvas."""
    d = model.summary_dict()
    title = Line(f'Model: "{d["name"]}"', TITLE_SIZE, bold=True)
    footer = [Line(f"Total params: {d['total_params']:,}", TITLE_SIZE, bold=True),
              Line(f"Trainable params: {d['trainable_params']:,} · "
                   f"Non-trainable params: {d['non_trainable_params']:,}", color=MUTED)]
    boxes = _boxes(d)
    box_w = math.ceil(max(line.width for b in boxes for line in b.lines)) + 2 * PAD_X
    width = max(box_w, math.ceil(max(line.width for line in [title, *footer]))) + 2 * MARGIN
    captions = [(_baseline(MARGIN, title), title)]
    y = MARGIN + title.height + GAP / 2
    for i, box in enumerate(boxes):
        y += GAP if i else 0
        box.x, box.y, box.w = (width - box_w) / 2, y, box_w
        box.h = sum(line.height for line in box.lines) + 2 * PAD_Y
        y += box.h
    y += GAP / 2
    for line in footer:
        captions.append((_baseline(y, line), line))
        y += line.height
    arrows, lanes = _arrows(boxes, edges(d))
    # the lanes need room right of the boxes; a chain (no lanes) keeps its width
    width = max(width, boxes[0].x + box_w + LANE * (lanes + 1) + MARGIN) if lanes else width
    return Layout(width, math.ceil(y + MARGIN), boxes, arrows, captions)


def _baselines(box: Box):
    """(baseline y, line) for each line of a box."""
    y = box.y + PAD_Y
    for line in box.lines:
        yield _baseline(y, line), line
        y += line.height


# -- SVG -----------------------------------------------------------------------------------------
def _svg_text(x: float, y: float, line: Line) -> str:
    weight = ' font-weight="bold"' if line.bold else ""
    return (f'<text x="{x:g}" y="{y:g}" font-size="{line.size}"{weight} fill="{line.color}">'
            f"{escape(line.text)}</text>")


def model_svg(model) -> str:
    """The diagram as a standalone SVG document (inline it in HTML as it is)."""
    lay = layout(model)
    w, h = lay.width, lay.height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:g}" height="{h:g}" '
           f'viewBox="0 0 {w:g} {h:g}" font-family="{FONT_STACK}" text-anchor="middle">',
           f"<title>{escape(model.name)}</title>",
           '<defs><marker id="arrowhead" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{ARROW}"/>'
           "</marker></defs>",
           f'<rect class="background" width="{w:g}" height="{h:g}" fill="#ffffff"/>']
    for y, line in lay.captions:
        out.append(_svg_text(w / 2, y, line))
    for points in lay.arrows:
        if len(points) == 2:
            (x, y0), (_, y1) = points
            out.append(f'<line class="arrow" x1="{x:g}" y1="{y0:g}" x2="{x:g}" y2="{y1:g}" '
                       f'stroke="{ARROW}" stroke-width="1.4" marker-end="url(#arrowhead)"/>')
        else:
            pts = " ".join(f"{x:g},{y:g}" for x, y in points)
            out.append(f'<polyline class="arrow" points="{pts}" fill="none" stroke="{ARROW}" '
                       'stroke-width="1.4" marker-end="url(#arrowhead)"/>')
    for box in lay.boxes:
        out.append(f'<g class="box" data-layer={quoteattr(box.name)}>')
        out.append(f'<rect x="{box.x:g}" y="{box.y:g}" width="{box.w:g}" height="{box.h:g}" '
                   f'rx="6" fill="{box.fill}" stroke="{EDGE}" stroke-width="1"/>')
        out += [_svg_text(box.x + box.w / 2, y, line) for y, line in _baselines(box)]
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- PNG -----------------------------------------------------------------------------------------
PNG_SCALE = 2  # pixels per layout pixel: sharp on high-density screens and in slides


def _save_png(model, path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as Route

    lay = layout(model)
    # one layout pixel = one point, so font sizes carry over from the SVG unchanged
    fig = Figure(figsize=(lay.width / 72, lay.height / 72), dpi=72 * PNG_SCALE)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)  # y grows downwards, as in the SVG
    ax.set_axis_off()

    def text(x, y, line):
        ax.text(x, y, line.text, ha="center", va="baseline", fontsize=line.size, color=line.color,
                fontfamily=FONT, fontweight="bold" if line.bold else "normal")

    for y, line in lay.captions:
        text(lay.width / 2, y, line)
    for points in lay.arrows:
        straight = len(points) == 2  # drawn as before graphs: the two ends, not a path
        where = dict(posA=points[0], posB=points[1]) if straight else dict(path=Route(points))
        ax.add_patch(FancyArrowPatch(**where, arrowstyle="-|>", mutation_scale=12, color=ARROW,
                                     linewidth=1.4, shrinkA=0, shrinkB=0))
    for box in lay.boxes:
        ax.add_patch(FancyBboxPatch((box.x, box.y), box.w, box.h, "round,pad=0,rounding_size=6",
                                    facecolor=box.fill, edgecolor=EDGE, linewidth=1))
        for y, line in _baselines(box):
            text(box.x + box.w / 2, y, line)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor="white")


# -- files ---------------------------------------------------------------------------------------
def check_diagram_path(path: str | os.PathLike) -> Path:
    """A diagram file name ends .svg or .png; say so before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        kind = repr(path.suffix) if path.suffix else "(no suffix)"
        raise CnnkitError(f"{path}: unknown diagram file type {kind}; valid: {', '.join(SUFFIXES)}")
    return path


def plot_model(model, path: str | os.PathLike):
    """`model.plot(path)`: the diagram written, returned as a Picture (a Path a notebook
    shows as the diagram)."""
    from cnnkit.look.figures import Picture

    return Picture(save_model_diagram(model, path))


def save_model_diagram(model, path: str | os.PathLike) -> Path:
    """Write the diagram to `path` (.svg or .png), atomically. Returns the path."""
    path = check_diagram_path(path)
    if path.suffix.lower() == ".svg":
        atomic_write_text(path, model_svg(model))
    else:
        _save_png(model, path)
    return path
