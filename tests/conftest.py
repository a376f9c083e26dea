import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERAS_REFERENCE = Path(os.environ.get("CNNKIT_KERAS_REFERENCE",
                                      ROOT.parent / "shared" / "keras_reference"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache: each gets its own CNNKIT_DATA."""
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path_factory.mktemp("cnnkit-data")))


@pytest.fixture
def keras_reference():
    if not KERAS_REFERENCE.is_dir():
        pytest.skip(f"Keras reference data not found at {KERAS_REFERENCE}")
    return KERAS_REFERENCE
