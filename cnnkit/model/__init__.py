"""Models: the Sequential description, its summary, model files, presets, saving, and the one
input and output contract every user of a trained model goes through.

    sequential.py  Sequential: layers -> shapes, parameters, the built PyTorch network
    graph.py       Functional: graph models (Keras's functional API), nested models
    summary.py     Keras's summary table and the arithmetic behind each row
    files.py       the same description as YAML, TOML or JSON; `resolve_model(name or path)`
    presets.py     every seed model (and cnnkit's fast ones) by name
    saving.py      a saved model is a directory: model.json + weights.safetensors
    inputs.py      the input contract: any image(s) a user holds -> uint8 pixels -> network input
    outputs.py     the output contract: logits -> class probabilities and the predicted class
    predict.py     probabilities for images as users hold them (inputs -> net -> outputs)
    module.py      a user's own nn.Module as a model (ModuleModel), its saving and loading
    keras_files.py, keras_writing.py   Keras's .keras and .h5 files read and written
    provided.py    what a model asks the stages above for by name (fit, plot, ...)
"""
__all__ = ["Sequential"]


def __getattr__(name: str):
    # on first use: `import cnnkit` wires cnnkit.model.provided, which must not build layers
    if name == "Sequential":
        from cnnkit.model.sequential import Sequential

        return Sequential
    raise AttributeError(f"module 'cnnkit.model' has no attribute {name!r}")
