"""`cnnkit plot-model` and `model.plot`: the layers drawn, with the numbers `summary --json`
prints."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.layers import Layer, register_layer
from cnnkit.look.diagram import model_svg
from cnnkit.model.files import load_model_file
from cnnkit.model.presets import PRESETS, create_model

SVG = "{http://www.w3.org/2000/svg}"


def keras_shape(shape):
    return "(None, " + ", ".join(map(str, shape)) + ")"


def boxes(svg: str):
    """Each box of the diagram, top to bottom: (its rect's attributes, its lines of text)."""
    root = ET.fromstring(svg)
    found = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "box":
            rect = g.find(f"{SVG}rect")
            found.append(({k: float(rect.get(k)) for k in ("x", "y", "width", "height")},
                          [t.text for t in g.iter(f"{SVG}text")]))
    return root, found


def summary_json(spec, capsys) -> dict:
    assert main(["summary", spec, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_draws_each_layer_with_the_summary_numbers(preset, capsys):
    summary = summary_json(preset, capsys)
    root, drawn = boxes(model_svg(create_model(preset)))

    graph = "connected_to" in summary["layers"][0]  # a graph's boxes are its layers
    layers = summary["layers"][1:] if graph else summary["layers"]
    assert len(drawn) == len(layers) + 1  # the input, then one box per layer
    assert drawn[0][1][1] == keras_shape(summary["input_shape"])
    assert drawn[0][1][0] == (f"{summary['layers'][0]['name']} (InputLayer)" if graph
                              else "input_layer (InputLayer)")
    for layer, (_, lines) in zip(layers, drawn[1:]):
        assert lines[0] == f"{layer['name']} ({layer['type']})"
        ins = layer["input_shape"]  # a merge layer's: a list of shapes
        ins = ", ".join(map(keras_shape, ins)) if isinstance(ins[0], list) else keras_shape(ins)
        assert f"{ins} → {keras_shape(layer['output_shape'])}" in lines
        assert lines[-1] == f"params: {layer['params']:,}"
    everything = " ".join(t.text for t in root.iter(f"{SVG}text"))
    assert f"Total params: {summary['total_params']:,}" in everything

    # top to bottom, one column, every box as wide as the others and inside the picture
    rects = [rect for rect, _ in drawn]
    assert all(a["y"] + a["height"] < b["y"] for a, b in zip(rects, rects[1:]))
    assert len({(r["x"], r["width"]) for r in rects}) == 1
    _, _, width, height = map(float, root.get("viewBox").split())
    assert (float(root.get("width")), float(root.get("height"))) == (width, height)
    assert all(0 < r["x"] and r["x"] + r["width"] < width and r["y"] + r["height"] < height
               for r in rects)
    edges = sum(len(layer["connected_to"]) for layer in layers) if graph else len(layers)
    assert len([a for a in root.iter() if a.get("class") == "arrow"]) == edges


def test_main_arguments_are_shown():
    _, drawn = boxes(model_svg(create_model("seed001-example")))
    lines = {box[1][0]: box[1][1:] for box in drawn}
    assert lines["conv2d (Conv2D)"][0] == ("filters=32, kernel=3×3, strides=1×1, padding=valid, "
                                          "activation=relu")
    assert lines["max_pooling2d (MaxPooling2D)"][0] == "pool=2×2, strides=2×2, padding=valid"
    assert lines["dropout (Dropout)"][0] == "rate=0.2"
    assert lines["dense (Dense)"][0] == "units=128, activation=relu"
    assert lines["flatten (Flatten)"] == ["(None, 10, 10, 64) → (None, 6400)", "params: 0"]


@register_layer
class ChannelGate(Layer):
    """A learned weight per channel; `note` is free text, to be drawn as written."""

    def __init__(self, note="", name=None):
        super().__init__(name)
        self.note = note

    def get_config(self):
        return {"note": self.note}

    def build(self, shape, init):
        import torch
        from torch import nn

        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(torch.ones(shape[-1], 1, 1))

            def forward(self, x):  # (B, C, H, W)
                return x * self.weight

        return Gate()


MODEL_YAML = """\
name: gated
input_shape: [16, 16, 3]
layers:
  - Conv2D: {filters: 4, kernel_size: 3, strides: 2, padding: same, activation: relu}
  - ChannelGate: {note: "a<b & \\"c\\""}
  - GlobalAveragePooling2D: {}
  - Dense: {units: 3, activation: softmax}
"""


def test_model_file_with_a_custom_layer_and_rgb_input_draws(tmp_path, capsys):
    path = tmp_path / "gated.yaml"
    path.write_text(MODEL_YAML)
    summary = summary_json(str(path), capsys)
    out = load_model_file(path).plot(tmp_path / "gated.svg")

    _, drawn = boxes(out.read_text())  # the note's <, & and " are escaped, or this fails to parse
    assert drawn[0][1][1] == "(None, 16, 16, 3)"
    assert drawn[1][1][1] == "filters=4, kernel=3×3, strides=2×2, padding=same, activation=relu"
    assert drawn[2][1] == ["channel_gate (ChannelGate)", 'note=a<b & "c"',
                           "(None, 8, 8, 4) → (None, 8, 8, 4)", "params: 4"]
    assert [lines[-1] for _, lines in drawn[1:]] == \
        [f"params: {layer['params']:,}" for layer in summary["layers"]]


def test_png_is_a_real_picture(tmp_path):
    out = create_model("seed002-fashion").plot(tmp_path / "model.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
        width, height = im.size
        assert 400 <= width <= 3000 and height > 2 * width  # nine boxes, one under the other
        darkest, lightest = im.convert("L").getextrema()
        assert lightest == 255 and darkest < 80  # white page, dark text
    assert [p.name for p in tmp_path.iterdir()] == ["model.png"]  # no temporary left behind


def test_cli_writes_the_file_and_prints_its_path(tmp_path, capsys):
    out = tmp_path / "diagrams" / "model.svg"
    assert main(["plot-model", "seed000-first", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert len(boxes(out.read_text())[1]) == 5


def test_cli_draws_a_saved_model(tmp_path, capsys):
    create_model("seed000-first").save(tmp_path / "saved")
    assert main(["plot-model", str(tmp_path / "saved"), "--out", str(tmp_path / "m.png")]) == 0
    with Image.open(tmp_path / "m.png") as im:
        assert im.format == "PNG"


@pytest.mark.parametrize("argv,message", [
    (["plot-model", "seed000-first", "--out", "OUT/model.pdf"],
     "model.pdf: unknown diagram file type '.pdf'; valid: .svg, .png"),
    (["plot-model", "seed000-first", "--out", "OUT/model"],
     "unknown diagram file type (no suffix)"),
    (["plot-model", "seed9", "--out", "OUT/model.svg"], "unknown model 'seed9'"),
])
def test_cli_errors_exit_2_with_one_line_and_write_nothing(argv, message, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_help_stays_light():
    code = ("import sys\nfrom cnnkit.cli import main\n"
            "for argv in (['--help'], ['plot-model', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print([m for m in ('torch', 'matplotlib') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "plot-model" in proc.stdout and "--out FILE" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
