"""`loader(dataset, batch_size=100, shuffle=True)`: batches for a hand-written PyTorch loop,
as torchvision's `DataLoader(datasets.MNIST(..., transform=ToTensor()))` gives them.

    for X, Y in cnnkit.data.loader("fashion-mnist", batch_size=100, shuffle=True):
        ...   # X: float32 (100, 1, 28, 28) in [0, 1], contiguous NCHW; Y: int64 (100,)

Batches are indexed out of the dataset's one uint8 tensor (cnnkit.data.batches), so there is
no per-sample Python; each pass over it is one epoch, in a new order when shuffling."""
from __future__ import annotations

import torch

from cnnkit.errors import one_of


class Loader:
    def __init__(self, x, y, batch_size, shuffle, seed, drop_last):
        from cnnkit.data.batches import BatchLoader

        self.batches = BatchLoader(x, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.dataset_size = len(x)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        from cnnkit.data.batches import standard_layout

        for xb, yb in self.batches:
            yield standard_layout(xb), yb  # (B, C, H, W) NCHW, as ToTensor's batches are


def loader(dataset, batch_size: int = 100, shuffle: bool = True, split: str = "train",
           seed: int | None = None, drop_last: bool = False) -> Loader:
    """`dataset`: a name (`load_dataset`'s) or a cnnkit Dataset; `split`: 'train' or 'test'.
    `seed=None` draws each order from torch's global generator (`torch.manual_seed` fixes it)."""
    from cnnkit.data import load_dataset

    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if split not in ("train", "test"):
        raise one_of("split", split, ["train", "test"])
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    if x is None:
        raise one_of("split", split, ["train"])
    if seed is None:
        seed = int(torch.randint(0, 2**31, ()).item())
    return Loader(x, y, batch_size, shuffle, seed, drop_last)
