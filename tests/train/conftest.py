"""Shared fixtures: sklearn's digits as uint8 images and a tiny stand-in for cnnkit's model.

The stand-in follows the model contract the trainer relies on: `.net` returns logits and
declares `output_activation`, `.input_shape` is (H, W, C), `.class_names`, `.save(path)` writes
a directory atomically, `.l2_penalty()` is a scalar tensor.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnkit.fsutil import atomic_dir


class TinyModel:
    def __init__(self, input_shape=(8, 8, 1), units=10, activation="softmax", dropout=0.0,
                 l2=0.0, seed=0, class_names="default"):
        torch.manual_seed(seed)
        h, w, c = input_shape
        layers = [nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(8 * (h // 2) * (w // 2), units))
        self.net = nn.Sequential(*layers)
        self.net.output_activation = activation
        self.input_shape = input_shape
        if class_names == "default":
            class_names = [str(i) for i in range(max(units, 2))]
        self.class_names = class_names
        self.l2 = l2
        self.saves = []

    def l2_penalty(self):
        if not self.l2:
            return torch.zeros(())
        return self.l2 * sum(p.square().sum() for n, p in self.net.named_parameters()
                             if n.endswith("weight"))

    def save(self, path):
        with atomic_dir(path) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()},
                      str(tmp / "model.safetensors"))
        self.saves.append(str(path))

    @staticmethod
    def load_weights(path):
        return load_file(f"{path}/model.safetensors")


def digits_data():
    """(x_train, y_train, x_val, y_val): 600 + 300 of sklearn's 8x8 digits, uint8 (N, 8, 8, 1)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images * 16).clamp(0, 255).to(torch.uint8).unsqueeze(-1)
    y = torch.tensor(d.target, dtype=torch.int64)
    return x[:600], y[:600], x[600:900], y[600:900]


@pytest.fixture(scope="session")
def digits():
    return digits_data()


@pytest.fixture
def make_model():
    return TinyModel
