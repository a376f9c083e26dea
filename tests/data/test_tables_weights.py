"""The same 1,000 Fashion-MNIST images written as CSV, parquet, npz and a folder of PNGs are the
same dataset to cnnkit: the same pixels and labels, and a run with the same seed ends with the
same weights to the last digit whichever file they came from."""
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.data import load_dataset
from cnnkit.data.idx import read_images_labels

FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{name: dataset name} of the four files, and the images and labels they hold. Sorted by
    class (stably), as a folder of class subfolders lists them, so every source has one order."""
    x, y = read_images_labels(FASHION / "t10k-images-idx3-ubyte.gz",
                              FASHION / "t10k-labels-idx1-ubyte.gz")
    order = np.argsort(y[:1000], kind="stable")
    x, y = np.asarray(x[:1000])[order], np.asarray(y[:1000], np.int64)[order]  # (1000, 28, 28)
    root = tmp_path_factory.mktemp("fashion")
    with open(root / "train.csv", "w") as f:
        f.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
        np.savetxt(f, np.column_stack([y, x.reshape(1000, -1)]), fmt="%d", delimiter=",")
    np.savez(root / "train.npz", x_train=x, y_train=y)
    pngs = []
    for i, (image, label) in enumerate(zip(x, y)):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        pngs.append({"bytes": buf.getvalue(), "path": f"{i:04d}.png"})  # datasets' Image struct
        (root / "png" / str(label)).mkdir(parents=True, exist_ok=True)
        (root / "png" / str(label) / f"{i:04d}.png").write_bytes(buf.getvalue())
    pq.write_table(pa.table({"image": pngs, "label": y}), root / "train.parquet")
    return {"csv": f"csv:{root / 'train.csv'}", "parquet": f"parquet:{root / 'train.parquet'}",
            "npz": f"npz:{root / 'train.npz'}", "folder": f"folder:{root / 'png'}"}, x, y


def test_every_source_holds_the_same_pixels_and_labels(sources):
    names, x, y = sources
    for name in names.values():
        ds = load_dataset(name)
        assert ds.image_shape == (28, 28, 1) and ds.class_names == [str(i) for i in range(10)]
        assert torch.equal(ds.x_train[..., 0], torch.from_numpy(x)), name
        assert torch.equal(ds.y_train, torch.from_numpy(y)), name


def test_a_run_on_each_source_ends_with_the_same_weights(sources):
    names, _, _ = sources
    weights = {}
    for kind, name in names.items():
        result = cnnkit.run(cnnkit.RunSpec(model="fast-cnn-dense", dataset=name, epochs=1,
                                           batch_size=64, seed=3, verbose=0))
        weights[kind] = {k: v.clone() for k, v in result.model.net.state_dict().items()}
    first = weights["csv"]
    assert first and all(torch.count_nonzero(v) for v in first.values()
                         if v.dtype.is_floating_point)
    for kind, w in weights.items():
        assert w.keys() == first.keys()
        for k in first:
            assert torch.equal(w[k], first[k]), (kind, k)  # to the last digit
