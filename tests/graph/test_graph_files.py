"""Graph models as files and pictures: `plot-model` draws every edge (the skip connection as a
connector beside the boxes), a Sequential's picture is as before, and a bad graph file is one
clear line with exit 2, naming what is wrong."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from _graph_helpers import RESIDUAL_EDGES, RESIDUAL_YAML, residual_model
from cnnkit.cli import main
from cnnkit.look.diagram import model_svg
from cnnkit.model.presets import create_model

SVG = "{http://www.w3.org/2000/svg}"
FIXTURES = Path(__file__).parent / "fixtures"


def _arrows(svg: str):
    root = ET.fromstring(svg)
    return [e for e in root.iter() if e.get("class") == "arrow"]


def _boxes(svg: str) -> dict:
    root = ET.fromstring(svg)
    found = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "box":
            rect = g.find(f"{SVG}rect")
            found[g.get("data-layer")] = {k: float(rect.get(k))
                                          for k in ("x", "y", "width", "height")}
    return found


def _ends(arrow) -> tuple:
    if arrow.tag == f"{SVG}line":
        return ((float(arrow.get("x1")), float(arrow.get("y1"))),
                (float(arrow.get("x2")), float(arrow.get("y2"))))
    points = [tuple(map(float, p.split(","))) for p in arrow.get("points").split()]
    return points[0], points[-1]


def _touches(point, box) -> bool:
    x, y = point
    return (box["x"] - 0.5 <= x <= box["x"] + box["width"] + 0.5
            and box["y"] - 0.5 <= y <= box["y"] + box["height"] + 0.5)


def test_plot_model_draws_one_arrow_per_edge_of_a_residual_graph(tmp_path):
    model_file = tmp_path / "residual.yaml"
    model_file.write_text(RESIDUAL_YAML)
    assert main(["plot-model", str(model_file), "--out", str(tmp_path / "g.svg")]) == 0
    svg = (tmp_path / "g.svg").read_text()
    boxes = _boxes(svg)
    assert list(boxes) == ["image", "stem", "conv_a", "conv_b", "add", "relu", "gap", "head"]
    arrows = _arrows(svg)
    assert len(arrows) == RESIDUAL_EDGES
    # each arrow starts on its source's box and ends on its target's: the edges, as drawn
    model = residual_model()
    names = model.layer_names()
    drawn = sorted((next(n for n, b in boxes.items() if _touches(a, b)),
                    next(n for n, b in boxes.items() if _touches(z, b)))
                   for a, z in map(_ends, arrows))
    edges = sorted((names[j], names[i]) for i, ins in enumerate(model.inbound) for j in ins)
    assert drawn == edges
    # the skip stem -> add is routed beside the boxes, not through them
    skip = [a for a in arrows if a.tag == f"{SVG}polyline"]
    assert len(skip) == 1
    xs = [float(p.split(",")[0]) for p in skip[0].get("points").split()]
    right = boxes["stem"]["x"] + boxes["stem"]["width"]
    assert max(xs) > right and float(ET.fromstring(svg).get("width")) > max(xs)


def test_routed_connectors_take_distinct_lanes_and_ports():
    import cnnkit.layers as L
    from _graph_helpers import Add
    from cnnkit.model.graph import Functional

    i = L.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same")(i)
    y = L.Conv2D(4, 3, padding="same")(x)
    z = Add()([x, y])
    y2 = L.Conv2D(4, 3, padding="same")(z)
    p = L.Conv2D(4, 1)(x)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(Add()([z, y2, p])))
    svg = model_svg(Functional(i, out))
    routed = [a.get("points") for a in _arrows(svg) if a.get("points")]
    assert len(_arrows(svg)) == 11 and len(routed) == 4
    verticals = [tuple(routed_pt.split()[1:3]) for routed_pt in routed]
    lanes = [float(v[0].split(",")[0]) for v in verticals]
    spans = [sorted(float(pt.split(",")[1]) for pt in v) for v in verticals]
    # connectors that overlap vertically are in different lanes
    for a in range(len(routed)):
        for b in range(a + 1, len(routed)):
            if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]:
                assert lanes[a] != lanes[b]
    starts = [r.split()[0] for r in routed]
    ends = [r.split()[-1] for r in routed]
    assert len(set(starts)) == len(starts) and len(set(ends)) == len(ends)


def test_a_sequential_is_drawn_as_before():
    # the SVG written by the version before graphs were drawn
    assert model_svg(create_model("seed001-example")) == (
        FIXTURES / "seed001-example.svg").read_text()


def test_the_png_of_a_graph(tmp_path):
    path = tmp_path / "g.png"
    residual_model().plot(path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 800


BAD = {
    "unknown input": ("layers:\n  - InputLayer: {shape: [8, 8, 1], name: image}\n"
                      "  - Conv2D: {filters: 4, kernel_size: 3, inputs: [imgae]}\n",
                      "inputs names 'imgae', which is not a layer listed before it; valid: image"),
    "a forward reference (a cycle)": (
        "layers:\n  - InputLayer: {shape: [8, 8, 1], name: image}\n"
        "  - Conv2D: {filters: 4, kernel_size: 3, name: a, inputs: [b]}\n"
        "  - Conv2D: {filters: 4, kernel_size: 3, name: b, inputs: [a]}\n",
        "layers[1]: inputs names 'b', which is not a layer listed before it"),
    "a layer after the output": (
        "layers:\n  - InputLayer: {shape: [8, 8, 1], name: image}\n"
        "  - Flatten: {name: flat}\n  - Dense: {units: 3, name: head}\n"
        "  - Dense: {units: 3, name: extra, inputs: [flat]}\noutputs: [head]\n",
        "outputs ['head']: valid: ['extra'], the last layer"),
    "shapes that do not merge": (
        "layers:\n  - InputLayer: {shape: [8, 8, 1], name: image}\n"
        "  - Conv2D: {filters: 4, kernel_size: 3, name: a}\n"
        "  - Conv2D: {filters: 4, kernel_size: 3, padding: same, name: b, inputs: [image]}\n"
        "  - Add: {inputs: [a, b]}\n",
        "(6, 6, 4), (8, 8, 4)"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["summary", "train"])
def test_a_bad_graph_file_is_one_clear_line_and_exit_2(case, command, tmp_path, capsys):
    text, message = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    argv = ["summary", str(path)] if command == "summary" else [
        "train", "--model", str(path), "--dataset", "digits", "--epochs", "1",
        "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing half-written
