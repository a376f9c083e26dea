"""Only rank 0 writes the run directory; callbacks that write or decide act once, and a stop
decided on rank 0 ends every rank at the same epoch."""
import csv
import json

import cnnkit
from cnnkit import RunSpec

from _ddp_helpers import BASE


def test_rank_zero_alone_writes_and_its_early_stop_ends_every_rank(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # every rank's working directory: nothing may land here
    out = tmp_path / "run"
    # patience 0 at a high learning rate: val_loss fails to improve within a few epochs
    r = cnnkit.run(RunSpec(**BASE, epochs=30, lr=0.02, early_stopping=0, tensorboard=True,
                           out=str(out)), nproc=2)
    assert r.metrics["stopped_early"] and r.metrics["epochs_run"] < 30
    assert "early stopping" in r.metrics["stop_reason"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert {p.name for p in out.iterdir()} >= {"config.json", "history.csv", "state", "best",
                                               "last", "metrics.json", "report.md",
                                               "tensorboard"}
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == r.metrics["epochs_run"] == len(r.history["loss"])  # once per epoch
    for split in ("train", "validation"):  # a second writer would leave a second event file
        assert len(list((out / "tensorboard" / split).iterdir())) == 1, split
    state = json.loads((out / "state" / "state.json").read_text())
    assert state["epoch"] == r.metrics["epochs_run"] and state["stop_training"]
