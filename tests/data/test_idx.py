"""IDX reading: round trips, and one clear line naming the file for every kind of bad file."""
import gzip

import numpy as np
import pytest

from cnnkit.data.idx import read_idx, read_idx_header, read_images_labels, write_idx
from cnnkit.errors import CnnkitError


def _images(n=5, h=28, w=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_round_trip_gzipped_or_not(tmp_path, name):
    x = _images()
    path = write_idx(tmp_path / name, x)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (5, 28, 28)
    np.testing.assert_array_equal(back, x)
    header = read_idx_header(path)
    assert header.dims == (5, 28, 28) and header.count == 5


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32", "float64", "int8"])
def test_wider_types_come_back_in_native_byte_order(tmp_path, dtype):
    x = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    back = read_idx(write_idx(tmp_path / "a.idx", x))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, x)


def test_header_matches_the_mnist_magic_numbers(tmp_path):
    images = write_idx(tmp_path / "i", _images())
    labels = write_idx(tmp_path / "l", np.zeros(5, np.uint8))
    assert images.read_bytes()[:4] == bytes.fromhex("00000803")
    assert labels.read_bytes()[:4] == bytes.fromhex("00000801")


def test_wrong_magic_names_file_and_value(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CnnkitError, match=r"train-images-idx3-ubyte: wrong magic number "
                                          r"0x89504E47"):
        read_idx(bad)


def test_truncated_gzip(tmp_path):
    good = write_idx(tmp_path / "good.gz", _images(50))
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CnnkitError, match=r"train-images-idx3-ubyte.gz: truncated gzip") as e:
        read_idx(bad)
    assert "\n" not in str(e.value)


def test_corrupt_gzip(tmp_path):
    data = bytearray(write_idx(tmp_path / "good.gz", _images(50)).read_bytes())
    data[30:60] = bytes(30)  # scribble over the deflate stream
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CnnkitError, match=r"t10k-images-idx3-ubyte.gz: (corrupt|truncated) gzip"):
        read_idx(bad)


def test_gzip_ok_but_idx_data_short(tmp_path):
    raw = write_idx(tmp_path / "raw", _images(10)).read_bytes()
    bad = tmp_path / "short.gz"
    bad.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(CnnkitError, match=r"short.gz: truncated IDX file: header promises "
                                          r"10x28x28 values"):
        read_idx(bad)


def test_trailing_garbage_is_reported(tmp_path):
    raw = write_idx(tmp_path / "raw", _images(3)).read_bytes()
    bad = tmp_path / "long"
    bad.write_bytes(raw + b"junk")
    with pytest.raises(CnnkitError, match=r"long: corrupt IDX file"):
        read_idx(bad)


def test_count_mismatch_names_both_files(tmp_path):
    x = write_idx(tmp_path / "train-images-idx3-ubyte.gz", _images(6))
    y = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(CnnkitError, match=r"train-images-idx3-ubyte.gz has 6 images but "
                                          r"train-labels-idx1-ubyte.gz has 5 labels"):
        read_images_labels(x, y)


def test_labels_where_images_expected(tmp_path):
    y = write_idx(tmp_path / "labels.gz", np.zeros(5, np.uint8))
    with pytest.raises(CnnkitError, match=r"labels.gz: expected uint8 images"):
        read_images_labels(y, y)


def test_missing_file(tmp_path):
    with pytest.raises(CnnkitError, match=r"nope.gz: file not found"):
        read_idx(tmp_path / "nope.gz")


def test_decoding_is_one_view_of_the_file_not_a_copy_per_image(tmp_path):
    """What keeps 60,000 images fast: the whole decompressed file is viewed with one
    np.frombuffer, so no image is copied or touched by Python on its own."""
    x = _images(1_000)
    path = write_idx(tmp_path / "big.gz", x)
    back = read_idx(path)
    np.testing.assert_array_equal(back, x)
    buffer = back
    while isinstance(buffer, np.ndarray):  # follow the views down to the memory they share
        buffer = buffer.base
    assert isinstance(buffer, bytes) and len(buffer) == 16 + x.nbytes  # the file, header and all
    assert back.flags.c_contiguous and not back.flags.owndata
