"""What the server tests share: a digit model trained in the test session on MNIST-like digits,
and real uvicorn servers on 127.0.0.1 serving it.

No MNIST on these machines (no internet), so the training set is scikit-learn's 1,797 8×8
handwritten digits passed through MNIST's own preparation (cnnkit.serve.drawing: ink box into
20×20, centred by centre of mass in 28×28), the preparation a drawing on the page gets too."""
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import cnnkit
from cnnkit.serve.drawing import prepare_drawing

CANVAS = 280  # the page's canvas, in pixels
INK = 20      # the page's stroke width


def mnist_like_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x8 = np.rint(d.images * (255 / 16)).astype(np.uint8)  # 0..16 ink levels → 0..255
    return np.stack([prepare_drawing(im) for im in x8]), d.target.astype(np.int64)


@pytest.fixture(scope="session")
def digit_run(tmp_path_factory):
    """A run directory: seed003-cnn trained 3 epochs (a few seconds) on MNIST-like digits."""
    root = tmp_path_factory.mktemp("digits")
    x, y = mnist_like_digits()
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1500], order[1500:]
    npz = root / "mnist_like.npz"
    np.savez(npz, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test],
             class_names=np.array([str(i) for i in range(10)]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNKIT_DATA", str(root / "cache"))
        cnnkit.run(cnnkit.RunSpec(model="seed003-cnn", dataset=f"npz:{npz}", epochs=3,
                                  batch_size=64, seed=1, verbose=0, out=str(root / "run")))
    return RunInfo(root / "run", x[test], y[test])


class RunInfo:
    def __init__(self, path: Path, x_test: np.ndarray, y_test: np.ndarray):
        self.path, self.x_test, self.y_test = path, x_test, y_test

    def test_image(self, tmp_path: Path, label: int) -> tuple[Path, np.ndarray]:
        """A PNG file of the first test digit with `label`, and its pixels."""
        i = int(np.flatnonzero(self.y_test == label)[0])
        path = tmp_path / f"test_digit_{label}.png"
        Image.fromarray(self.x_test[i]).save(path)
        return path, self.x_test[i]


@pytest.fixture(scope="session")
def drawn():
    return draw_digit


def draw_digit(kind: str) -> Image.Image:
    """What the page's canvas holds after drawing a "1" (a vertical stroke) or a "0" (an
    ellipse): white ink, INK wide, on black."""
    im = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(im)
    if kind == "1":
        d.line([(140, 50), (146, 230)], fill=255, width=INK)
    else:
        d.ellipse([80, 50, 200, 230], outline=255, width=INK)
    return im


class Server:
    """A real uvicorn server on 127.0.0.1 (a free port) in a thread, serving `app` as
    `cnnkit serve` does (cnnkit.serve.connections.server_config)."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import uvicorn

        from cnnkit.cli.serve import listen
        from cnnkit.serve.connections import server_config

        self.sock = listen(host, 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(server_config(app, host))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            self.thread.join(0.02)
        assert self.server.started, "uvicorn did not start"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="session")
def serve():
    """serve(app, host="127.0.0.1") → a started Server; all are stopped at the end of the
    session."""
    servers = []

    def start(app, host: str = "127.0.0.1"):
        servers.append(Server(app, host))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def digit_server(digit_run, serve):
    from cnnkit.serve.app import create_app
    from cnnkit.serve.predictor import Predictor

    return serve(create_app(Predictor(digit_run.path)))
