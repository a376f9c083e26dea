import math
import os

import torch

from cnnkit.train.state import pack, read_state, unpack, write_state


def test_pack_round_trips_optimizer_like_trees():
    tree = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}},
            "param_groups": [{"betas": (0.9, 0.999), "params": [0], "lr": 1e-3, "x": None}],
            "best": math.inf}
    tensors = {}
    back = unpack(pack(tree, tensors), tensors)
    assert back["state"][0]["exp_avg"].equal(torch.ones(2, 2)) and back["best"] == math.inf
    assert back["param_groups"][0]["betas"] == (0.9, 0.999) and list(back["state"]) == [0]


def test_a_kill_between_the_two_renames_still_reads_the_previous_state(tmp_path):
    write_state(tmp_path / "state", {"w": torch.zeros(3)}, {"epoch": 4})
    os.replace(tmp_path / "state", tmp_path / ".state.old")  # as atomic_dir does, then killed
    weights, state = read_state(tmp_path / "state")
    assert state["epoch"] == 4 and weights["w"].equal(torch.zeros(3))
