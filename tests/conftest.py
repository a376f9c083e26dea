import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A fixed thread count for every run the tests start (child processes inherit it): the tests
# compare runs to the last digit, and `--threads auto` may choose differently from one run to
# the next on a loaded machine. tests/train/test_threads.py tests auto itself.
os.environ.setdefault("CNNKIT_THREADS", str(len(os.sched_getaffinity(0))))
# Keras 3.15.1's own shapes, parameter counts and outputs, shipped with the tests.
KERAS_REFERENCE = Path(os.environ.get("CNNKIT_KERAS_REFERENCE",
                                      ROOT / "tests" / "fixtures" / "keras_reference"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache: each gets its own CNNKIT_DATA."""
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path_factory.mktemp("cnnkit-data")))


@pytest.fixture(scope="module")
def keras():
    """Real Keras 3 on its torch backend, the reference the Keras tests compare with (each test
    module sets KERAS_BACKEND=torch before anything imports it)."""
    import keras

    assert keras.backend.backend() == "torch"
    yield keras
    # Keras numbers automatic layer names process-wide (batch_normalization_1, ...): later
    # test modules that read names Keras gave get them fresh, as if this one never ran
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def real(keras):
    """The same real Keras, for test modules whose own `keras` is cnnkit.keras."""
    return keras


@pytest.fixture(scope="session")
def preset_model():
    """`preset_model(name)`: the preset, keras.applications' networks (224×224×3, 1000 classes
    by default) at their smallest input, 32×32×3 with 10 classes: the every-preset tests run each
    network many times, which at 224 would take minutes on a CPU."""
    from cnnkit.model.presets import PRESETS, create_model

    def make(name):
        large = PRESETS[name].input_shape[0] >= 224
        return create_model(name, input_shape=(32, 32, 3), num_classes=10) if large else create_model(name)
    return make


@pytest.fixture
def keras_reference():
    # A missing folder fails rather than skips: the data ships with the tests, so its absence
    # is a broken checkout or a wrong CNNKIT_KERAS_REFERENCE, never a reason to test less.
    if not KERAS_REFERENCE.is_dir():
        pytest.fail(f"Keras reference data not found at {KERAS_REFERENCE} (it ships in "
                    f"tests/fixtures/keras_reference/; CNNKIT_KERAS_REFERENCE overrides it)",
                    pytrace=False)
    return KERAS_REFERENCE


# Debian's Chromium, driven by Playwright (never a downloaded browser): the report.html and
# served-page tests open their pages in it.
CHROMIUM = os.environ.get("CNNKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def _browser(args: list):
    # Fail, never skip: `make test` installs both, so a missing one is a broken setup.
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -r requirements-dev.txt", pytrace=False)
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's (apt-get install "
                    "chromium); CNNKIT_CHROMIUM names another", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser():
    with _browser(CHROMIUM_ARGS) as b:
        yield b


# Chromium's own test camera (a moving picture, no permission prompt): the webcam tests.
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def camera_browser():
    with _browser([*CHROMIUM_ARGS, *FAKE_CAMERA]) as b:
        yield b



@pytest.fixture
def keras_reference_values(keras_reference):
    """values.json: (its cases, their arrays as float32 numpy arrays named `cN_x`, `cN_y`,
    `cN_kernel`, `cN_bias`). The JSON holds Keras's float32 values as text; they read back
    exactly."""
    import json

    import numpy as np

    cases = json.loads((keras_reference / "values.json").read_text())["cases"]
    return cases, {f"{case['key']}_{name}": np.asarray(values, np.float32)
                   for case in cases for name, values in case["arrays"].items()}
