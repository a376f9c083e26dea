"""MNIST family and CIFAR-10: where files are found, what a load returns, downloads, bad files."""
import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from _http_server import FileServer, dead_url
from cnnkit.data import mnist
from cnnkit.data.idx import write_idx
from cnnkit.data.mnist import MNIST_FAMILY, cache_dir, load_mnist_family, locate
from cnnkit.errors import CnnkitError

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own cache and no system dataset dirs (unless it adds some)."""
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "system_dirs", lambda name: [tmp_path / "system" / name])


def make_idx(folder: Path, n_train=20, n_test=7, size=28, seed=0, gz=True):
    """Small MNIST-style files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
    for name, key in zip(IDX_NAMES, arrays):
        write_idx(folder / (name if gz else name[:-3]), arrays[key])
    return arrays


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("CNNKIT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "cnnkit"


def test_system_dirs_include_debian_location(monkeypatch):
    monkeypatch.undo()  # the real function, not the autouse stub
    monkeypatch.setenv("XDG_DATA_DIRS", "/opt/share")
    assert mnist.system_dirs("fashion-mnist") == [
        Path("/opt/share/datasets/fashion-mnist"),
        Path("/usr/local/share/datasets/fashion-mnist"),
        Path("/usr/share/datasets/fashion-mnist")]


def test_lookup_order_data_dir_then_cache_then_system(tmp_path):
    user, cache, system = tmp_path / "mine", tmp_path / "cache" / "mnist", tmp_path / "system" / "mnist"
    assert locate("mnist") is None
    make_idx(system)
    assert locate("mnist") == system
    make_idx(cache)
    assert locate("mnist") == cache
    make_idx(user)
    assert locate("mnist", data_dir=user) == user
    assert locate("mnist", data_dir=tmp_path / "empty") == cache  # falls through


def test_data_dir_may_hold_a_subfolder_per_dataset(tmp_path):
    make_idx(tmp_path / "datasets" / "kmnist")
    assert locate("kmnist", data_dir=tmp_path / "datasets") == tmp_path / "datasets" / "kmnist"


def test_incomplete_folder_is_not_located(tmp_path):
    folder = tmp_path / "mine"
    make_idx(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert locate("mnist", data_dir=folder) is None


@pytest.mark.parametrize("gz", [True, False])
def test_load_gives_uint8_nhwc_tensors_with_official_test_split(tmp_path, gz):
    arrays = make_idx(tmp_path / "mine", gz=gz)
    ds = load_mnist_family("mnist", data_dir=tmp_path / "mine", download=False)
    assert ds.name == "mnist" and ds.class_names == list("0123456789")
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (20, 28, 28, 1)
    assert ds.y_train.dtype == torch.int64 and ds.y_train.shape == (20,)
    assert ds.x_test.shape == (7, 28, 28, 1) and ds.y_test.shape == (7,)
    assert ds.image_shape == (28, 28, 1)
    np.testing.assert_array_equal(ds.x_train[..., 0].numpy(), arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test.numpy(), arrays["y_test"])
    assert ds.source == str(tmp_path / "mine")
    assert ds.info["sha256_verified"] is False  # fixtures aren't the published files


def test_decoded_tensors_are_cached_and_invalidated_when_files_change(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    make_idx(folder, seed=1)
    first = load_mnist_family("fashion-mnist", data_dir=folder, download=False)
    decoded = tmp_path / "cache" / "fashion-mnist" / "decoded-v1.npz"
    assert decoded.is_file()
    assert [p.name for p in decoded.parent.iterdir()] == ["decoded-v1.npz"]  # no temp files left

    def no_decoding(*args):
        raise AssertionError("decoded again although the files did not change")

    monkeypatch.setattr(mnist, "_decode_idx", no_decoding)
    second = load_mnist_family("fashion-mnist", data_dir=folder, download=False)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)
    assert second.class_names[0] == "T-shirt/top"
    monkeypatch.undo()

    new = make_idx(folder, n_train=11, seed=2)  # the user replaces the files
    third = load_mnist_family("fashion-mnist", data_dir=folder, download=False)
    np.testing.assert_array_equal(third.x_train[..., 0].numpy(), new["x_train"])


def test_not_found_without_download_says_where_to_put_files(tmp_path):
    with pytest.raises(CnnkitError) as e:
        load_mnist_family("kmnist", download=False)
    msg = str(e.value)
    assert str(tmp_path / "cache" / "kmnist") in msg and "\n" not in msg
    assert all(name in msg for name in IDX_NAMES)


def test_missing_data_dir_is_an_error_not_a_download(tmp_path):
    with pytest.raises(CnnkitError, match=r"data dir '.*nowhere' does not exist"):
        load_mnist_family("mnist", data_dir=tmp_path / "nowhere")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(CnnkitError, match=r"unknown dataset 'minst'; valid: mnist, fashion-mnist, "
                                          r"kmnist, cifar10"):
        load_mnist_family("minst")


def _spec_served_by(name, files: dict[str, bytes], mirrors):
    spec = MNIST_FAMILY[name]
    remote = tuple(mnist.RemoteFile(f.name, hashlib.sha256(files[f.name]).hexdigest(),
                                    len(files[f.name])) for f in spec.files)
    return dataclasses.replace(spec, files=remote, mirrors=tuple(mirrors))


def test_download_into_cache_then_load_offline(tmp_path, monkeypatch):
    arrays = make_idx(tmp_path / "published")
    files = {n: (tmp_path / "published" / n).read_bytes() for n in IDX_NAMES}
    with FileServer(files) as srv:
        spec = _spec_served_by("mnist", files, [dead_url().rsplit("/", 1)[0], srv.base])
        monkeypatch.setitem(MNIST_FAMILY, "mnist", spec)
        ds = load_mnist_family("mnist", progress=False)
    cached = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted([*IDX_NAMES, "decoded-v1.npz"])
    assert ds.info["sha256_verified"] is True
    np.testing.assert_array_equal(ds.x_test[..., 0].numpy(), arrays["x_test"])
    assert locate("mnist") == cached  # found offline from now on


def test_download_with_a_bad_checksum_leaves_cache_clean(tmp_path, monkeypatch):
    make_idx(tmp_path / "published")
    files = {n: (tmp_path / "published" / n).read_bytes() for n in IDX_NAMES}
    with FileServer(files) as srv:
        spec = _spec_served_by("mnist", files, [srv.base])
        srv.mode["t10k-images-idx3-ubyte.gz"] = "wrong"
        monkeypatch.setitem(MNIST_FAMILY, "mnist", spec)
        with pytest.raises(CnnkitError, match=r"t10k-images-idx3-ubyte.gz: .*SHA-256 mismatch"):
            load_mnist_family("mnist", progress=False)
    cached = tmp_path / "cache" / "mnist"
    assert "t10k-images-idx3-ubyte.gz" not in {p.name for p in cached.iterdir()}
    assert not any(p.name.endswith(".part") for p in cached.iterdir())


def test_offline_error_names_cache_dir_and_all_files(monkeypatch, tmp_path):
    spec = dataclasses.replace(MNIST_FAMILY["kmnist"],
                               mirrors=(dead_url().rsplit("/", 1)[0], dead_url().rsplit("/", 1)[0]))
    monkeypatch.setitem(MNIST_FAMILY, "kmnist", spec)
    with pytest.raises(CnnkitError) as e:
        load_mnist_family("kmnist", progress=False)
    msg = str(e.value)
    assert "looks offline" in msg and "\n" not in msg
    assert f"{tmp_path / 'cache' / 'kmnist'}/" in msg
    assert all(name in msg for name in IDX_NAMES)


def test_count_mismatch_names_the_files(tmp_path):
    folder = tmp_path / "mine"
    make_idx(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(CnnkitError, match=r"train-images-idx3-ubyte.gz has 20 images but "
                                          r"train-labels-idx1-ubyte.gz has 19 labels"):
        load_mnist_family("mnist", data_dir=folder, download=False)


def test_truncated_file_in_data_dir_is_named(tmp_path):
    folder = tmp_path / "mine"
    make_idx(folder, n_train=300)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(CnnkitError, match=rf"{path}: truncated gzip"):
        load_mnist_family("mnist", data_dir=folder, download=False)
    assert not (tmp_path / "cache" / "mnist" / "decoded-v1.npz").exists()


def test_wrong_image_size_and_label_range(tmp_path):
    make_idx(tmp_path / "a", size=32)
    with pytest.raises(CnnkitError, match=r"images are 32x32, mnist images are 28x28"):
        load_mnist_family("mnist", data_dir=tmp_path / "a", download=False)
    make_idx(tmp_path / "b")
    write_idx(tmp_path / "b" / "t10k-labels-idx1-ubyte.gz", np.full(7, 12, np.uint8))
    with pytest.raises(CnnkitError, match=r"test label 12 is out of range for mnist's 10"):
        load_mnist_family("mnist", data_dir=tmp_path / "b", download=False)


# ---- CIFAR-10 (binary tarball) ------------------------------------------------------------

def make_cifar(folder: Path, per_batch=4, extracted=False):
    """Records are [label, R plane, G plane, B plane]; pixel (r, c) of channel k of image i is
    (i + 7k + r + 2c) % 256 so the HWC conversion is checkable."""
    folder.mkdir(parents=True, exist_ok=True)
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    blobs, images = {}, []
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for b, name in enumerate(names):
        rows = []
        for j in range(per_batch):
            i = b * per_batch + j
            planes = np.stack([(i + 7 * k + r + 2 * c) % 256 for k in range(3)]).astype(np.uint8)
            images.append(planes.transpose(1, 2, 0))
            rows.append(bytes([i % 10]) + planes.tobytes())
        blobs[name] = b"".join(rows)
    if extracted:
        for name, data in blobs.items():
            (folder / "cifar-10-batches-bin").mkdir(exist_ok=True)
            (folder / "cifar-10-batches-bin" / name).write_bytes(data)
    else:
        with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
            for name, data in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return np.stack(images)


@pytest.mark.parametrize("extracted", [False, True])
def test_cifar10_binary_decodes_to_hwc(tmp_path, extracted):
    images = make_cifar(tmp_path / "c", extracted=extracted)
    ds = load_mnist_family("cifar10", data_dir=tmp_path / "c", download=False)
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.class_names[:3] == ["airplane", "automobile", "bird"]
    np.testing.assert_array_equal(ds.x_train.numpy(), images[:20])
    np.testing.assert_array_equal(ds.x_test.numpy(), images[20:])
    assert ds.y_train.tolist() == [i % 10 for i in range(20)]


def test_cifar10_truncated_archive_is_named(tmp_path):
    make_cifar(tmp_path / "c", per_batch=50)
    tar = tmp_path / "c" / "cifar-10-binary.tar.gz"
    tar.write_bytes(tar.read_bytes()[:-20000])
    with pytest.raises(CnnkitError, match=rf"{tar}: (corrupt or truncated archive|.*truncated)"):
        load_mnist_family("cifar10", data_dir=tmp_path / "c", download=False)


def test_spec_table_is_complete():
    for name, spec in MNIST_FAMILY.items():
        assert spec.name == name and len(spec.class_names) in (10, 100) and spec.mirrors
        for f in spec.files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0 and f.size > 0
            assert all(u.endswith("/" + f.name) for u in spec.urls(f))
    assert [f.name for f in MNIST_FAMILY["cifar10"].files] == ["cifar-10-binary.tar.gz"]


# ---- the real thing, where Debian's dataset-fashion-mnist is installed --------------------

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_system_dir(monkeypatch):
    monkeypatch.setattr(mnist, "system_dirs", lambda name: [DEBIAN_FASHION.parent / name])
    assert locate("fashion-mnist") == DEBIAN_FASHION
    ds = load_mnist_family("fashion-mnist", download=False)
    assert len(ds.x_train) == 60_000 and len(ds.x_test) == 10_000
    assert ds.x_train.shape[1:] == (28, 28, 1) and ds.x_train.dtype == torch.uint8
    assert ds.class_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                              "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert ds.y_train[:5].tolist() == [9, 0, 0, 3, 0]  # the first image is an ankle boot
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.info["sha256_verified"] is True  # Debian's repackaging is in the table
    assert abs(ds.x_train.float().mean().item() / 255 - 0.2860) < 1e-3
