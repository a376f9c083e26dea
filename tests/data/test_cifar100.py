"""CIFAR-100 from its binary tarball: decoded (fine and coarse labels), downloaded from a local
server with its checksum and cached, `--dataset cifar100`, and `cnnkit.keras.datasets.cifar100`
returning what real Keras 3's load_data returns for the same images."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

from _http_server import FileServer
from cnnkit.data import load_dataset, mnist
from cnnkit.data.mnist import MNIST_FAMILY, load_mnist_family
from cnnkit.errors import CnnkitError

ARCHIVE = "cifar-100-binary.tar.gz"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "system_dirs", lambda name: [tmp_path / "system" / name])


def make_arrays(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        out[split] = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 100, n), rng.integers(0, 20, n))  # images, fine, coarse
    return out


def write_binary(folder: Path, arrays, extracted=False) -> Path:
    """The published layout: cifar-100-binary/{train,test}.bin of [coarse, fine, R, G, B]."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for split, (x, fine, coarse) in arrays.items():
        planes = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # (N, 3072): R, G, B planes
        rows = np.concatenate([coarse[:, None], fine[:, None], planes], axis=1).astype(np.uint8)
        blobs[f"cifar-100-binary/{split}.bin"] = rows.tobytes()
    blobs["cifar-100-binary/fine_label_names.txt"] = b"apple\n"
    if extracted:
        for name, data in blobs.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder
    with tarfile.open(folder / ARCHIVE, "w:gz") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder / ARCHIVE


@pytest.mark.parametrize("extracted", [False, True])
def test_binary_decodes_images_fine_and_coarse_labels(tmp_path, extracted):
    arrays = make_arrays()
    write_binary(tmp_path / "c", arrays, extracted=extracted)
    ds = load_mnist_family("cifar100", data_dir=tmp_path / "c", download=False)
    assert ds.x_train.shape == (12, 32, 32, 3) and ds.x_test.shape == (5, 32, 32, 3)
    assert len(ds.class_names) == 100 and ds.class_names[:2] == ["apple", "aquarium_fish"]
    assert ds.class_names[-1] == "worm" and ds.info["coarse_class_names"][-1] == "vehicles_2"
    np.testing.assert_array_equal(ds.x_train.numpy(), arrays["train"][0])
    assert ds.y_test.tolist() == arrays["test"][1].tolist()
    assert ds.info["coarse_labels"]["train"].tolist() == arrays["train"][2].tolist()


def test_downloaded_with_its_checksum_cached_and_named_as_a_dataset(tmp_path, monkeypatch):
    arrays = make_arrays()
    body = write_binary(tmp_path / "published", arrays).read_bytes()
    with FileServer({ARCHIVE: body}) as srv:
        spec = dataclasses.replace(
            MNIST_FAMILY["cifar100"], mirrors=(srv.base,),
            files=(mnist.RemoteFile(ARCHIVE, hashlib.sha256(body).hexdigest(), len(body)),))
        monkeypatch.setitem(MNIST_FAMILY, "cifar100", spec)
        ds = load_dataset("cifar100", progress=False)
        assert ds.info["sha256_verified"] is True
        srv.mode[ARCHIVE] = "404"  # from now on, only the cache
        again = load_dataset("CIFAR100", progress=False)
    cached = tmp_path / "cache" / "cifar100"
    assert sorted(p.name for p in cached.iterdir()) == [ARCHIVE, "decoded-v1.npz"]
    np.testing.assert_array_equal(again.x_test.numpy(), arrays["test"][0])
    assert again.info["coarse_labels"]["test"].tolist() == arrays["test"][2].tolist()


def test_a_wrong_download_leaves_nothing_and_says_where_to_put_the_file(tmp_path, monkeypatch):
    body = write_binary(tmp_path / "published", make_arrays()).read_bytes()
    with FileServer({ARCHIVE: body}) as srv:
        spec = dataclasses.replace(
            MNIST_FAMILY["cifar100"], mirrors=(srv.base,),
            files=(mnist.RemoteFile(ARCHIVE, hashlib.sha256(body).hexdigest(), len(body)),))
        monkeypatch.setitem(MNIST_FAMILY, "cifar100", spec)
        srv.mode[ARCHIVE] = "wrong"
        with pytest.raises(CnnkitError, match=r"SHA-256 mismatch") as e:
            load_dataset("cifar100", progress=False)
    assert "\n" not in str(e.value) and f"{tmp_path / 'cache' / 'cifar100'}/" in str(e.value)
    assert not (tmp_path / "cache" / "cifar100" / ARCHIVE).exists()


def test_the_published_archive_is_pinned():
    spec = MNIST_FAMILY["cifar100"]
    assert [(f.name, f.size) for f in spec.files] == [(ARCHIVE, 168513733)]
    assert spec.files[0].sha256 == "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"
    assert spec.urls(spec.files[0])[0] == "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_keras_load_data_matches_real_keras(tmp_path, monkeypatch, label_mode):
    """Real Keras reads the Python version of the same images (pickles: made here, read by
    Keras's own loader); cnnkit reads the binary one. The arrays must be identical."""
    from keras.src.datasets import cifar100 as keras_cifar100

    from cnnkit.keras import datasets

    arrays = make_arrays()
    write_binary(tmp_path / "system" / "cifar100", arrays)  # found on the machine
    python = tmp_path / "keras" / "cifar-100-python"
    python.mkdir(parents=True)
    for split, (x, fine, coarse) in arrays.items():
        record = {b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1),
                  b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist()}
        (python / split).write_bytes(pickle.dumps(record))
    monkeypatch.setattr(keras_cifar100, "get_file", lambda **kw: str(python.parent))
    theirs = keras_cifar100.load_data(label_mode=label_mode)
    ours = datasets.cifar100.load_data(label_mode=label_mode)
    for (xa, ya), (xb, yb) in zip(theirs, ours):
        assert (xb.dtype, xb.shape, yb.dtype, yb.shape) == (xa.dtype, xa.shape, ya.dtype, ya.shape)
        np.testing.assert_array_equal(xb, xa)
        np.testing.assert_array_equal(yb, ya)


def test_keras_label_mode_is_checked_as_keras_does():
    from cnnkit.keras import datasets

    with pytest.raises(CnnkitError, match=r'^`label_mode` must be one of `"fine"`, `"coarse"`. '
                                          r"Received: label_mode=super.$"):
        datasets.cifar100.load_data(label_mode="super")
    with pytest.raises(CnnkitError, match="unexpected argument label_mode"):
        datasets.cifar10.load_data(label_mode="fine")
