"""Shared by the cnnkit.keras tests: a matplotlib that draws to files (the image folders are in
_keras_folders.py: `from conftest import` would find another directory's conftest)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _agg(monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the seeds write files (model.png, best-cnn-model.h5) in cwd
