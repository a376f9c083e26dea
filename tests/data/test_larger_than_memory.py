"""Datasets larger than memory: a folder whose decoded images are larger than the memory a
process may use still trains, gathered batch by batch from its memory-mapped cache; a decode
cut short leaves nothing a later load trusts; splits of a mapped set are index arrays."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.folder import load_folder
from cnnkit.data.mapped import is_mapped, read_cache
from cnnkit.data.rows import Rows, take
from _big_folder_helpers import MODEL_YAML, make_folder, train_in_child

MiB = 1 << 20
# RLIMIT_DATA for the child, measured on this machine (2 shared cores, torch 2.13 CPU): this
# run (import, decode, one epoch, the report and its figures) also finished under 640 MiB, with
# a peak RSS of 622 MiB (665 MiB without a limit: libraries' pages included); 768 MiB leaves a
# margin, and the decoded folder (1,000 MiB) is well above it. The test takes ~35 s here.
LIMIT = 768 * MiB
IMAGES = 1334  # 512x512x3 each: 1,000 MiB decoded


def test_a_folder_larger_than_the_memory_limit_trains_under_it(tmp_path):
    (tmp_path / "model.yaml").write_text(MODEL_YAML)
    decoded = make_folder(tmp_path / "big", IMAGES)
    assert decoded > LIMIT * 1.25
    t0 = time.perf_counter()
    proc, result = train_in_child(LIMIT, tmp_path / "model.yaml", tmp_path / "big",
                                  tmp_path / "run", tmp_path / "cache")
    assert result is not None, proc.stderr[-3000:]
    # the run finished: every split went through the model, its report was written
    assert len(result["history"]["loss"]) == 1 and result["test_accuracy"] > 0.9
    assert (tmp_path / "run" / "report.html").is_file()
    # its own memory stayed under the limit; and its resident pages, the mapped file's read-only
    # page-cache pages included (which the kernel keeps or drops as memory allows: 650-880 MiB
    # seen), never held the whole decoded set
    # (VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child forked from a
    # test process that has grown past 1 GiB reports its parent's size, not its own)
    assert 0 < result["peak_anon"] < LIMIT, result
    assert result["peak_rss"] < decoded, result
    cache = list((tmp_path / "cache" / "folders").glob("*.safetensors"))
    assert len(cache) == 1 and cache[0].stat().st_size > decoded  # the whole set, on disk
    print(f"decoded {decoded / MiB:.0f} MiB under a {LIMIT / MiB:.0f} MiB limit: peak RSS "
          f"{result['peak_rss'] / MiB:.0f} MiB, own memory {result['peak_anon'] / MiB:.0f} MiB in {time.perf_counter() - t0:.1f} s")


def test_the_same_limit_refuses_the_set_held_in_memory(tmp_path):
    """The limit is real: the same process cannot hold this decoded set in memory."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_DATA, (%d, %d)); "
            "import torch; torch.empty(%d, dtype=torch.uint8).fill_(1)" % (LIMIT, LIMIT, IMAGES * 512 * 512 * 3))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "allocate" in proc.stderr, proc.stderr[-500:]


def _small_folder(root: Path, per_class: int = 6):
    from PIL import Image

    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((5, 4, 3), 40 * k + i, np.uint8)).save(root / name / f"{i}.png")


def test_folder_images_are_mapped_from_one_cache_file(tmp_path):
    _small_folder(tmp_path / "d")
    first = load_folder(tmp_path / "d")
    again = load_folder(tmp_path / "d")
    assert again.info["cached"] and is_mapped(again.x_train)
    assert torch.equal(first.x_train, again.x_train)
    assert sorted(again.x_train[:, 0, 0, 0].tolist()) == [0, 1, 2, 3, 4, 5, 40, 41, 42, 43, 44, 45]
    # an ordinary safetensors file: any reader opens it
    from safetensors.torch import load_file

    plain = load_file(again.info["cache"])
    assert torch.equal(plain["x_train"], again.x_train)
    assert torch.equal(plain["y_train"], again.y_train)


def test_a_decode_cut_short_leaves_no_cache_that_is_trusted(tmp_path, monkeypatch):
    """A decode killed midway (here: a process killed while it writes) leaves at most a
    hidden temporary file; the next load decodes again and never reads that file."""
    _small_folder(tmp_path / "d", per_class=40)
    cache_env = tmp_path / "cache"
    code = (
        "import os, sys, cnnkit.data.mapped as m\n"
        "real = m.CacheWriter.write\n"
        "def write(self, rows):\n"
        "    real(self, rows); self.file.flush(); os._exit(9)  # killed after one chunk\n"
        "m.CacheWriter.write = write\n"
        "import cnnkit.data.folder as f; f._CHUNK_BYTES = 600\n"
        f"f.load_folder({str(tmp_path / 'd')!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={"CNNKIT_DATA": str(cache_env), "PATH": "/usr/bin"})
    assert proc.returncode == 9, proc.stderr[-2000:]
    left = list((cache_env / "folders").iterdir())
    assert left and all(p.name.startswith(".") for p in left)  # only the temporary file
    assert all(read_cache(p) is None for p in left)  # and it is no valid cache either
    monkeypatch.setenv("CNNKIT_DATA", str(cache_env))
    ds = load_folder(tmp_path / "d")
    assert not ds.info["cached"] and len(ds.x_train) == 80
    assert load_folder(tmp_path / "d").info["cached"]


def test_splits_of_a_mapped_set_are_index_arrays_not_copies(tmp_path):
    _small_folder(tmp_path / "d")
    ds = load_folder(tmp_path / "d")
    ds = load_folder(tmp_path / "d")  # mapped
    keep = torch.tensor([0, 2, 3, 5, 7, 8, 11])
    part = take(ds.x_train, keep)
    assert isinstance(part, Rows) and part.shape == (7, 5, 4, 3)
    assert part.base.untyped_storage().data_ptr() == ds.x_train.untyped_storage().data_ptr()
    sub = take(part, torch.tensor([1, 4]))  # a split of the split: one composed index
    assert isinstance(sub, Rows) and sub.index.tolist() == [2, 7]
    assert torch.equal(sub[0:2], ds.x_train[[2, 7]])
    assert torch.equal(part.index_select(0, torch.tensor([6, 0])), ds.x_train[[11, 0]])
    # an in-memory set keeps being gathered as before
    mem = ds.x_train.clone()
    assert isinstance(take(mem, keep), torch.Tensor)


def test_training_on_a_mapped_split_matches_the_same_images_in_memory(tmp_path):
    """The mapped path (a Rows split, batches gathered from the file, evaluation by slices)
    gives the same numbers, to the last digit, as the same images copied into memory."""
    from cnnkit.model.sequential import Sequential
    from cnnkit.train.trainer import TrainConfig, Trainer

    _small_folder(tmp_path / "d", per_class=30)
    load_folder(tmp_path / "d")
    ds = load_folder(tmp_path / "d")
    train, val = take(ds.x_train, torch.arange(0, 60, 2)), take(ds.x_train, torch.arange(1, 60, 2))
    desc = {"input_shape": [5, 4, 3], "layers": [
        {"Conv2D": {"filters": 4, "kernel_size": 2, "activation": "relu"}}, {"Flatten": {}},
        {"Dense": {"units": 2, "activation": "softmax"}}]}
    results = []
    for x, xv in ((train, val), (train.materialize(), val.materialize())):
        torch.manual_seed(0)
        model = Sequential.from_config(desc)
        cfg = TrainConfig(epochs=2, batch_size=8, seed=3, verbose=0, device="cpu",
                          precision="fp32", normalize="standardize", threads=1)
        trainer = Trainer(model, cfg)
        history = trainer.fit(x, ds.y_train[0::2], xv, ds.y_train[1::2])
        history.history.pop("time")
        results.append((history.history, trainer.predict_logits(xv)))
    assert isinstance(train, Rows) and isinstance(results[1][1], torch.Tensor)
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])
