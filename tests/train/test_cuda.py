"""The GPU path: `--device cuda` with bf16 and fp16 (loss-scaled) training gives sane accuracy.

Marked `cuda`: deselected by default (pyproject's addopts `-m 'not cuda'`), so a machine
without a GPU neither runs nor counts them; bench/gpu_check.sh runs them with `-m cuda`, and
there a missing GPU is a failure, not a skip."""
import pytest
import torch

import cnnkit
from cnnkit.cli import main

pytestmark = pytest.mark.cuda


def test_a_gpu_is_there():
    assert torch.cuda.is_available(), "these tests need a CUDA GPU (run them via bench/gpu_check.sh)"


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_training_reaches_a_sane_accuracy(tmp_path, precision):
    result = cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset="digits", epochs=5,
                                       batch_size=32, seed=0, device="cuda",
                                       precision=precision, verbose=0,
                                       out=str(tmp_path / "run"), artifacts="metrics"))
    assert result.metrics["device"].startswith("cuda")
    assert result.metrics["precision"] == precision
    assert result.metrics["test_accuracy"] > 0.9, result.metrics["test_accuracy"]


def test_fp16_on_cuda_uses_a_grad_scaler():
    from cnnkit.data import load_digits
    from cnnkit.model.presets import create_model
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    ds = load_digits()
    trainer = Trainer(create_model("seed003-cnn", input_shape=(8, 8, 1)),
                      TrainConfig(epochs=1, batch_size=64, seed=0, device="cuda",
                                  precision="fp16", verbose=0))
    assert isinstance(trainer.scaler, torch.amp.GradScaler) and trainer.scaler.is_enabled()
    trainer.fit(ds.x_train, ds.y_train)
    assert trainer.scaler.get_scale() > 1
    assert next(trainer.model.net.parameters()).is_cuda


def test_cli_train_on_cuda_with_fp16(tmp_path, capsys):
    code = main(["train", "--model", "seed003-cnn", "--dataset", "digits", "--epochs", "2",
                 "--device", "cuda", "--precision", "fp16", "--seed", "0",
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_mapped_folder_trains_on_cuda(tmp_path):
    """Batches gathered on the CPU from a memory-mapped cache, moved through pinned memory."""
    import numpy as np
    from PIL import Image

    for k, name in enumerate(("a", "b")):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(40):
            img = np.full((16, 16), 30 + i, np.uint8)
            img[(0, 8)[k]:(8, 16)[k]] = 220
            Image.fromarray(img).save(tmp_path / "d" / name / f"{i}.png")
    model = {"input_shape": [16, 16, 1], "layers": [
        {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
        {"Dense": {"units": 2, "activation": "softmax"}}]}
    cnnkit.run(cnnkit.RunSpec(model=model, dataset=f"folder:{tmp_path / 'd'}", epochs=1,
                              seed=0, device="cuda", verbose=0))  # decodes: the cache
    result = cnnkit.run(cnnkit.RunSpec(model=model, dataset=f"folder:{tmp_path / 'd'}",
                                       epochs=5, batch_size=8, seed=0, device="cuda",
                                       precision="bf16", val_split=0.2, verbose=0))
    assert result.metrics["test_accuracy"] > 0.9
