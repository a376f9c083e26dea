"""cnnkit in a notebook: a small notebook executed by a real Jupyter kernel (nbclient +
ipykernel), its saved outputs checked as Colab or JupyterLab would show them."""
from __future__ import annotations

import base64
import sys
import textwrap

import nbformat
from nbclient import NotebookClient

PNG = b"\x89PNG\r\n\x1a\n"

CELLS = [
    """
    import numpy as np
    import cnnkit
    from cnnkit import Sequential, layers as L
    from cnnkit.data import load_dataset
    from cnnkit.look import plots
    from cnnkit.look.inside import feature_maps, first_layer_filters
    from cnnkit.look.metrics import classification_report
    data = load_dataset("digits")
    x, y = data.x_train.numpy()[:600], data.y_train.numpy()[:600]
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", padding="same"),
                        L.MaxPooling2D(2), L.Flatten(), L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    """,
    "model.summary()",
    "history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, seed=0)",
    "plots.plot_history(history.history, 'curves.png')",
    """
    probs = model.predict(x[:4])
    plots.plot_probabilities(x[:4], probs, data.class_names, 'predictions.png', true=y[:4])
    """,
    """
    report = classification_report(model.predict(x), y, data.class_names)
    plots.plot_confusion_matrix(report["confusion_matrix"], data.class_names, 'cm.png')
    """,
    "plots.plot_filters(first_layer_filters(model), 'filters.png')",
    "plots.plot_feature_maps(next(iter(feature_maps(model, x[0]).values())), 'maps.png')",
]


def _run_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    # the kernel is this test's own interpreter (the venv with cnnkit), whatever the
    # machine's default python3 kernel is
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.km = client.create_kernel_manager()
    client.km.kernel_spec.argv[0] = sys.executable
    client.execute()
    return nb


def _texts(cell) -> list[str]:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif "text/plain" in o.get("data", {}):
            out.append(o.data["text/plain"])
    return out


def test_a_notebook_shows_summary_one_bar_per_epoch_and_the_pictures_inline(tmp_path):
    nb = _run_notebook(tmp_path)
    summary, fit = nb.cells[1], nb.cells[2]
    assert "Total params" in "".join(_texts(summary)) and "Conv2D" in "".join(_texts(summary))

    # training: one display per epoch, each ending as that epoch's line; no batch lines
    shown = [o for o in fit.outputs if o.output_type == "display_data"]
    assert [o.data["text/plain"].split(" - ")[0] for o in shown] == \
        ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("val_accuracy: " in o.data["text/plain"] for o in shown)
    assert all("text/html" not in o.data for o in shown)  # the bar is gone once done
    streamed = "".join(o.text for o in fit.outputs if o.output_type == "stream")
    assert "Epoch" not in streamed and "\r" not in streamed

    # each picture is the cell's value, shown as a PNG, and saved under its name
    for cell, name in zip(nb.cells[3:], ["curves", "predictions", "cm", "filters", "maps"]):
        (result,) = [o for o in cell.outputs if o.output_type == "execute_result"]
        png = base64.b64decode(result.data["image/png"])
        assert png.startswith(PNG)
        assert png == (tmp_path / f"{name}.png").read_bytes()
