"""Models: the Sequential description, its summary, model files, presets, saving, and the one
input and output contract every user of a trained model goes through.

    sequential.py  Sequential: layers -> shapes, parameters, the built PyTorch network
    summary.py     Keras's summary table and the arithmetic behind each row
    files.py       the same description as YAML, TOML or JSON; `resolve_model(name or path)`
    presets.py     every seed model (and cnnkit's fast ones) by name
    saving.py      a saved model is a directory: model.json + weights.safetensors
    inputs.py      the input contract: any image(s) a user holds -> uint8 pixels -> network input
    outputs.py     the output contract: logits -> class probabilities and the predicted class
    predict.py     probabilities for images as users hold them (inputs -> net -> outputs)
"""
from cnnkit.model.sequential import Sequential  # noqa: F401

__all__ = ["Sequential"]
