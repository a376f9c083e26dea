"""What cnnkit's TensorBoard callback (cnnkit.train.callbacks) shows beyond scalars: the
HPARAMS tab's hyper-parameters, a grid of training images and the validation confusion matrix."""
from __future__ import annotations

from pathlib import Path


# Hyper-parameters shown in TensorBoard's HPARAMS tab: what shapes the numbers, not where or how
# verbosely they were computed (device, verbose, eval_batch_size, ...).
HPARAMS = ("epochs", "batch_size", "optimizer", "momentum", "nesterov", "weight_decay", "loss",
           "label_smoothing", "schedule", "clip_norm", "augment", "mixup", "cutmix",
           "random_erasing", "test_time_flip", "ema",
           "normalize")


def hparams(trainer) -> dict:
    import json

    cfg = trainer.config.to_dict()
    hp = {"model": getattr(trainer.model, "name", None),  # a Sequential's; absent elsewhere
          "dataset": getattr(trainer.model, "dataset", None),
          **{k: cfg[k] for k in HPARAMS},
          "lr": trainer.optimizer.defaults["lr"],  # as used: an unset lr is Keras's default
          "seed": trainer.seed, "precision": trainer.precision}
    hp |= getattr(getattr(trainer, "objective", None), "hparams", None) or {}  # a compile()
    if cfg["schedule"] == "step":
        hp |= {"step_size": cfg["step_size"], "gamma": cfg["gamma"]}
    # Unset values are left out (TensorBoard shows a blank): "none" beside numbers would make
    # the whole column a string. Dicts (augment) become one JSON string.
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
            for k, v in hp.items() if v is not None}


def png(pixels) -> bytes:
    """uint8 (H, W, C) as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def sample_grid(x, n: int = 64, min_side: int = 32) -> bytes:
    """Up to `n` training images spread evenly over the set (no random draw: the run's random
    streams stay untouched), 8 to a row with 1-pixel gaps, small images scaled up by whole
    pixels so 8x8 digits are not a smudge."""
    import numpy as np

    from cnnkit.data.rows import as_array  # a mapped set's split: only the picks are read

    x = as_array(x.cpu() if hasattr(x, "cpu") else x)  # (N, H, W, C) uint8
    pick = np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int)
    tiles = x[pick]
    k = max(1, min_side // max(x.shape[1:3]))
    tiles = tiles.repeat(k, axis=1).repeat(k, axis=2)
    count, h, w, c = tiles.shape
    cols = min(8, count)
    rows = -(-count // cols)
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, cols)
        grid[r * (h + 1):r * (h + 1) + h, col * (w + 1):col * (w + 1) + w] = tile
    return png(grid)


def confusion_png(trainer, x_val, y_val) -> bytes:
    """The validation split's confusion matrix, drawn as the run's confusion_matrix.png is."""
    import tempfile

    import numpy as np

    from cnnkit.model.outputs import predicted_class
    from cnnkit.model.provided import provided  # cnnkit.look.plots's, which train may not import

    plot_confusion_matrix = provided("plot_confusion_matrix")

    logits = trainer.predict_logits(x_val)  # (N, K)
    pred = predicted_class(logits, trainer.model.net.output_activation).numpy()
    k = trainer.num_classes
    y = np.asarray(y_val.cpu() if hasattr(y_val, "cpu") else y_val)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    names = getattr(trainer.model, "class_names", None)
    with tempfile.TemporaryDirectory() as tmp:  # plots write files; TensorBoard wants the bytes
        return plot_confusion_matrix(cm, names, Path(tmp) / "cm.png").read_bytes()

