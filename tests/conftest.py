import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Keras 3.15.1's own shapes, parameter counts and outputs, shipped with the tests.
KERAS_REFERENCE = Path(os.environ.get("CNNKIT_KERAS_REFERENCE",
                                      ROOT / "tests" / "fixtures" / "keras_reference"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache: each gets its own CNNKIT_DATA."""
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path_factory.mktemp("cnnkit-data")))


@pytest.fixture
def keras_reference():
    # A missing folder fails rather than skips: the data ships with the tests, so its absence
    # is a broken checkout or a wrong CNNKIT_KERAS_REFERENCE, never a reason to test less.
    if not KERAS_REFERENCE.is_dir():
        pytest.fail(f"Keras reference data not found at {KERAS_REFERENCE} (it ships in "
                    f"tests/fixtures/keras_reference/; CNNKIT_KERAS_REFERENCE overrides it)",
                    pytrace=False)
    return KERAS_REFERENCE
