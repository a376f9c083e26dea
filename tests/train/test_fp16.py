"""--precision fp16: autocast to float16 with torch's GradScaler (loss scaling), on any device;
here on the CPU, where every test runs (tests/train/test_cuda.py repeats it on a GPU)."""
import torch

import cnnkit
from cnnkit.train.trainer import Trainer


def test_fp16_trains_with_loss_scaling_to_a_sane_accuracy(tmp_path):
    small = {"input_shape": [8, 8, 1], "layers": [  # fp16 on a CPU is emulated: keep it small
        {"Conv2D": {"filters": 8, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
        {"Dense": {"units": 10, "activation": "softmax"}}]}
    result = cnnkit.run(cnnkit.RunSpec(model=small, dataset="digits", epochs=4,
                                       batch_size=32, seed=0, device="cpu", precision="fp16",
                                       threads=2, verbose=0, out=str(tmp_path / "run"),
                                       artifacts="metrics"))
    assert result.metrics["precision"] == "fp16"
    assert result.metrics["test_accuracy"] > 0.85, result.metrics["test_accuracy"]


def test_fp16_trainer_scales_the_loss_and_resumes_the_scale(tmp_path):
    from cnnkit.data import load_digits
    from cnnkit.model.presets import create_model
    from cnnkit.train.config import TrainConfig

    ds = load_digits()
    cfg = TrainConfig(epochs=1, batch_size=64, seed=1, device="cpu", precision="fp16",
                      threads=1, verbose=0, clip_norm=1.0)
    trainer = Trainer(create_model("seed003-cnn", input_shape=(8, 8, 1)), cfg)
    assert isinstance(trainer.scaler, torch.amp.GradScaler)
    trainer.fit(ds.x_train, ds.y_train)
    scale = trainer.scaler.get_scale()
    assert scale > 1  # the loss was scaled (65536 at the start, halved on any overflow)
    trainer.save_state(tmp_path / "state")
    again = Trainer(create_model("seed003-cnn", input_shape=(8, 8, 1)), cfg)
    again.load_state(tmp_path / "state")
    assert again.scaler.get_scale() == scale
    fp32 = Trainer(create_model("seed003-cnn", input_shape=(8, 8, 1)),
                   TrainConfig(epochs=1, device="cpu", precision="fp32", verbose=0))
    assert fp32.scaler is None
