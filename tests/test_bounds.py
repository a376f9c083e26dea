"""Bounded parsing, sizes refused from the arithmetic, and no nonsense accepted.

Every case is one line naming the file (or layer) and what would be valid, and nothing is built,
allocated or written first. The lines are asserted short: a file's value is never echoed whole.
"""
import json
import math
import resource

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import cnnkit
from cnnkit import layers as L
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.io.bounded import MAX_BYTES, MAX_HANDWRITTEN_BYTES
from cnnkit.model.files import load_model_file
from cnnkit.model.saving import check_preprocessing
from cnnkit.model.sequential import Sequential
from cnnkit.io.rundir import RunDir
from cnnkit.train.state import read_state, write_state

HEAD = "input_shape: [8, 8, 1]\nlayers:\n"


def one_line(e) -> str:
    text = str(e.value) if hasattr(e, "value") else str(e)
    assert "\n" not in text and len(text) < 1000, text[:1000]  # never the megabytes a file holds
    return text


def billion_laughs() -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi"):
        text += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
    return text  # 9^9 ≈ 387 million strings once expanded, in 700 bytes


# -- parsing: (file name, its text, what the one line says) ----------------------------------
PARSE_CASES = [
    ("bomb.yaml", billion_laughs(), "its aliases expand it past 1,000,000 values"),
    ("cycle.yaml", "a: &a [1, *a]\n", "an alias refers to a list or mapping that contains it"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deep; valid: at most 64 levels"),
    ("deep.yaml", "[" * 100_000 + "]" * 100_000, "nested too deep"),
    ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000, "nested too deep"),
    ("deep65.yaml", "a: " + "[" * 65 + "]" * 65, "nested too deep"),
    ("inf.json", '{"input_shape": [8, 8, 1], "layers": [{"Dropout": {"rate": 1e999999}}]}',
     "layers[0].Dropout.rate is inf; valid: a finite number"),
    ("nan.json", '{"input_shape": [8, 8, 1], "layers": [{"Dropout": {"rate": NaN}}]}',
     "layers[0].Dropout.rate is nan"),
    ("nan.yaml", HEAD + "  - BatchNormalization: {epsilon: .nan}\n",
     "layers[0].BatchNormalization.epsilon is nan"),
    ("inf.toml", 'input_shape = [8, 8, 1]\n[[layers]]\nLeakyReLU = {negative_slope = inf}\n',
     "layers[0].LeakyReLU.negative_slope is inf"),
    ("digits.json", '{"input_shape": [8, 8, 1], "layers": [{"Dense": {"units": ' + "9" * 10_000
     + "}}]}", "a number of 10,000 digits; valid: at most 100 digits"),
    ("digits.yaml", HEAD + "  - Dense: {units: " + "9" * 10_000 + "}\n", "a number of 10,000 digits"),
    ("digits.toml", "input_shape = [8, 8, 1]\n[[layers]]\nDense = {units = " + "9" * 10_000 + "}\n",
     "a number of 10,000 digits"),
    ("digits200.yaml", HEAD + "  - Dense: {units: " + "9" * 200 + "}\n",
     "layers[0].Dense.units is an integer of over 100 digits"),
    ("many.json", "[" + "0, " * 1_200_000 + "0]", "more than 1,000,000 values"),
    ("big.yaml", "#" * (MAX_HANDWRITTEN_BYTES + 1), "too large for a model file; valid: at most "
     "262,144 bytes (256 KiB)"),
    # echoes of what the file holds are cut short, however long
    ("type.json", json.dumps({"input_shape": [8, 8, 1], "layers": [{"X" * 10**6: {}}]}),
     "unknown layer type 'XXXX"),
    ("act.json", json.dumps({"input_shape": [8, 8, 1], "layers": [{"Dense": {
        "units": 2, "activation": "r" * 10**6}}]}), "(1,000,000 characters); valid: linear"),
    ("arg.json", json.dumps({"input_shape": [8, 8, 1], "layers": [{"Dense": {
        "units": 2, "k" * 10**6: 1}}]}), "Dense has no argument 'kkkk"),
]


@pytest.mark.parametrize("name,text,message", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_what_no_model_file_needs_is_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CnnkitError) as e:
        load_model_file(path)
    assert message in one_line(e) and str(e.value).startswith(str(path))


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: no byte is written or read
    with pytest.raises(CnnkitError, match=r"huge.json: too large for a model file; valid: at "
                                          r"most 4,194,304 bytes \(4 MiB\)"):
        load_model_file(path)


def test_aliases_that_expand_little_still_load(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text(HEAD + "  - {Conv2D: &c {filters: 4, kernel_size: 3}}\n  - {Conv2D: *c}\n"
                    "  - Flatten: {}\n  - Dense: {units: 2}\n")
    assert load_model_file(path).output_shape == (2,)


# -- sizes that cannot be allocated, refused from the arithmetic -----------------------------
SIZE_CASES = [
    (lambda: Sequential([L.Flatten(), L.Dense(10**11)], input_shape=(8, 8, 1)),
     "layers[1] Dense: its output (100000000000,) is 100,000,000,000 values per image (373 GiB "
     "as float32); valid: at most 1,073,741,824 values per image (4.0 GiB as float32)"),
    (lambda: Sequential([L.Flatten(), L.Dense(100_000)], input_shape=(256, 256, 3)),
     "layers[1] Dense: 19,660,900,000 parameters (73 GiB as float32); valid: a model of at most "
     "2,147,483,648 parameters (8.0 GiB as float32)"),
    (lambda: Sequential([L.Flatten()] + [L.Dense(30_000) for _ in range(4)], input_shape=(64, 64, 1)),
     "layers[4] Dense: 900,030,000 parameters bring the model to 2,823,000,000"),
    (lambda: Sequential([L.Conv2D(512, 3, padding="same")], input_shape=(4000, 4000, 3)),
     "layers[0] Conv2D: its output (4000, 4000, 512) is 8,192,000,000 values per image"),
    (lambda: Sequential([L.ZeroPadding2D(10**6)], input_shape=(8, 8, 1)),
     "layers[0] ZeroPadding2D: its output (2000008, 2000008, 1)"),
    (lambda: Sequential([L.Dense(10**5000)], input_shape=(8, 8, 1)),
     "layers[0] Dense: its output (8, 8, <an integer of about 5,000 digits>) is over 10^30 values "
     "per image (beyond any memory)"),
    (lambda: Sequential([L.Flatten()], input_shape=(100_000, 100_000, 1)),
     "input_shape (100000, 100000, 1) is 10,000,000,000 values per image (37 GiB as float32)"),
]


@pytest.mark.parametrize("make,message", SIZE_CASES)
def test_sizes_past_the_bounds_are_one_line_naming_layer_size_and_bound(make, message):
    with pytest.raises(CnnkitError) as e:
        make().layer_infos()
    assert message in one_line(e)


def test_a_refused_size_allocates_nothing():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    model = Sequential([L.Flatten(), L.Dense(10**11)], input_shape=(8, 8, 1))
    with pytest.raises(CnnkitError, match="values per image"):
        model.build()
    with pytest.raises(CnnkitError, match="values per image"):
        model.predict(np.zeros((1, 8, 8, 1), np.uint8))
    # 373 GiB of weights were asked for; the peak did not move by even 100 MiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


def test_a_huge_stride_gives_one_output_not_zero():
    # ceil(8 / 2**2000) is 1; as a float the quotient underflowed to 0 and so did the output
    model = Sequential([L.Conv2D(4, 3, strides=2**2000, padding="same")], input_shape=(8, 8, 1))
    assert model.output_shape == (1, 1, 4)


# -- no nonsense accepted: layer arguments ---------------------------------------------------
NAN, INF = float("nan"), float("inf")
ARGUMENT_CASES = [
    (lambda: L.BatchNormalization(epsilon=NAN), "epsilon must be a number > 0; received epsilon=nan"),
    (lambda: L.BatchNormalization(epsilon=INF), "epsilon=inf"),
    (lambda: L.BatchNormalization(epsilon=True), "epsilon=True"),
    (lambda: L.BatchNormalization(momentum=NAN), "momentum must be a number in [0, 1); received momentum=nan"),
    (lambda: L.BatchNormalization(momentum=False), "momentum=False"),
    (lambda: L.LeakyReLU(NAN), "negative_slope must be a number >= 0; received negative_slope=nan"),
    (lambda: L.LeakyReLU(INF), "negative_slope=inf"),
    (lambda: L.LeakyReLU(10**400), "negative_slope=<an integer of about 400 digits>"),
    (lambda: L.Dropout(NAN), "rate must be a number in [0, 1); received rate=nan"),
    (lambda: L.Dropout(True), "rate=True"),
    (lambda: L.Conv2D(8, 3, kernel_regularizer=NAN), "a finite factor >= 0; received nan"),
    (lambda: L.Dense(4, kernel_regularizer={"l2": INF}), "received inf"),
    (lambda: L.Dense(4, kernel_regularizer={"l2": -1}), "received -1"),
    (lambda: L.Conv2D(32.0, 3), "filters must be a positive integer; received filters=32.0"),
    (lambda: L.Conv2D(True, 3), "filters=True"),
    (lambda: L.Conv2D(8, 3.0), "kernel_size=3.0"),
    (lambda: L.Conv2D(8, 3, strides=(1, True)), "strides=(1, True)"),
    (lambda: L.Dense(10.0), "units=10.0"),
    (lambda: L.Dense(4, use_bias="false"), "use_bias must be true or false; received use_bias='false'"),
    (lambda: L.Dense("u" * 10**6), "(1,000,000 characters)"),
]


@pytest.mark.parametrize("make,message", ARGUMENT_CASES)
def test_nan_infinity_and_wrong_kinds_of_numbers_are_refused(make, message):
    with pytest.raises(CnnkitError) as e:
        make()
    assert message in one_line(e)


# -- saved models ---------------------------------------------------------------------------
def small():
    return Sequential([L.Flatten(), L.Dense(3, activation="softmax")], input_shape=(2, 2, 1),
                      class_names=["a", "b", "c"])


def edit_meta(path, **changes):
    meta = json.loads((path / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    (path / "model.json").write_text(json.dumps(meta))


SAVED_CASES = [
    ({"config": None}, "model.json: missing key 'config'"),
    ({"config": []}, "model.json: config=[] is not understood; valid: a mapping"),
    ({"class_names": ["a"]}, "class_names has 1 names but the model's output stands for 3 "
                             "classes; valid: 3 names, or null"),
    ({"class_names": [1, 2, 3]}, "class_names=[1, 2, 3] is not understood; valid: a list of strings"),
    ({"class_names": "abc"}, "class_names='abc' is not understood"),
    ({"dataset": 7}, "dataset=7 is not understood"),
    ({"preprocessing": {"normalize": "standardize", "mean": [0.5], "std": [NAN]}},
     "model.json: corrupt JSON (preprocessing.std[0] is nan; valid: a finite number)"),
    ({"preprocessing": {"normalize": "standardize", "mean": [0.5], "std": [1e39]}},
     "preprocessing std=[1e+39] is out of range; valid: 1 number (one per channel), finite, each > 0"),
]


@pytest.mark.parametrize("changes,message", SAVED_CASES)
def test_a_malformed_saved_model_names_its_file_and_key(tmp_path, changes, message):
    small().save(tmp_path / "m")
    edit_meta(tmp_path / "m", **changes)
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(tmp_path / "m")
    assert message in one_line(e) and "model.json" in str(e.value)


def test_preprocessing_statistics_must_be_finite():
    for bad in (NAN, INF, -INF, 10**400):
        with pytest.raises(CnnkitError, match="is out of range"):
            check_preprocessing({"normalize": "standardize", "mean": [bad], "std": [1.0]}, 1, "m")


def test_a_model_with_non_finite_weights_is_refused_at_load(tmp_path):
    small().save(tmp_path / "m")
    weights = load_file(str(tmp_path / "m" / "weights.safetensors"))
    weights["layers.dense.linear.bias"][1] = float("nan")
    save_file(weights, str(tmp_path / "m" / "weights.safetensors"))
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(tmp_path / "m")
    assert one_line(e).endswith("weights.safetensors: tensor 'layers.dense.linear.bias' holds NaN "
                                "or infinity; a model with non-finite weights cannot predict (was "
                                "it saved from a run whose loss diverged?)")


def test_predict_never_returns_nan_probabilities_silently():
    model = small()
    model.set_layer_weights("dense", [np.full((4, 3), 3e38, np.float32), np.zeros(3, np.float32)])
    images = np.zeros((3, 2, 2, 1), np.uint8)
    images[2] = 255  # logits 4 × 3e38 overflow to inf: softmax(inf, inf, inf) is NaN
    assert np.isfinite(model.predict(images[:2])).all()
    with pytest.raises(CnnkitError) as e:
        model.predict(images)
    assert "probabilities for image 2 of 3 are NaN or infinite" in one_line(e)


def test_saving_class_names_the_output_cannot_stand_for_writes_nothing(tmp_path):
    model = small()
    model.class_names = ["a", "b"]
    with pytest.raises(CnnkitError, match="class_names has 2 names but the model's output stands "
                                          "for 3 classes"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


# -- run directories and training states --------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    ('{"resolved": {}}', "config.json: corrupt run configuration (missing key 'options')"),
    ('{"options": {"lr": NaN}}', "config.json: corrupt run configuration (options.lr is nan; "
                                 "valid: a finite number)"),
    ("[" * 5000 + "]" * 5000, "corrupt run configuration (lists and mappings nested too deep"),
])
def test_a_malformed_run_config_names_the_file_and_key(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CnnkitError) as e:
        RunDir(tmp_path).options
    assert message in one_line(e)


def test_a_state_keeps_its_infinities(tmp_path):
    write_state(tmp_path / "s", {"w": torch.ones(2)}, {"epoch": 1, "best": math.inf})
    assert read_state(tmp_path / "s")[1]["best"] == math.inf  # EarlyStopping before epoch 1


def corrupt_state(path, case):
    (path / "SHA256SUMS").unlink()  # as a state from before checksums: the checks past them
    if case == "nan weights":
        save_file({"w": torch.tensor([1.0, float("nan")])}, str(path / "model.safetensors"))
        return
    tree = json.loads((path / "state.json").read_text())
    if case == "epoch":
        tree["epoch"] = "three"
    elif case == "tensor":
        tree["x"] = {"__tensor__": "s.nowhere"}
    (path / "state.json").write_text(json.dumps(tree))


@pytest.mark.parametrize("case,message", [
    ("nan weights", "model.safetensors: tensor 'w' holds NaN or infinity"),
    ("epoch", "state.json: corrupt training state (epoch='three'; valid: an integer >= 0)"),
    ("tensor", "state.json: corrupt training state (tensor 's.nowhere' is not in state.safetensors)"),
])
def test_a_corrupt_state_is_one_line(tmp_path, case, message):
    write_state(tmp_path / "s", {"w": torch.ones(2)}, {"epoch": 1, "m": torch.zeros(2)})
    corrupt_state(tmp_path / "s", case)
    with pytest.raises(CnnkitError) as e:
        read_state(tmp_path / "s")
    assert message in one_line(e)


# -- the command line: exit 2, one line, nothing written ------------------------------------------
CLI_CASES = {
    "bomb.yaml": (billion_laughs(), "aliases expand it past"),
    "deep.json": ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    "inf.json": ('{"input_shape": [8, 8, 1], "layers": [{"Dropout": {"rate": 1e999999}}]}', "is inf"),
    "units.yaml": (HEAD + "  - Flatten: {}\n  - Dense: {units: 100000000000}\n", "values per image"),
    "input.yaml": ("input_shape: [100000, 100000, 1]\nlayers:\n  - Flatten: {}\n", "values per image"),
    "bias.yaml": (HEAD + "  - Conv2D: {filters: 2, kernel_size: 3, use_bias: 'no'}\n",
                  "use_bias must be true or false"),
}


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 255, (20, 8, 8, 1), dtype=np.uint8),
             y_train=np.arange(20) % 2)
    return path


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_summary_and_train_exit_2_with_one_line_and_write_nothing(tmp_path, npz, capsys, name):
    text, message = CLI_CASES[name]
    path = tmp_path / name
    path.write_text(text)
    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and len(err) < 600
    out = tmp_path / "run"
    assert main(["train", "--model", str(path), "--dataset", f"npz:{npz}", "--epochs", "1",
                 "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_a_run_file_with_nan_is_refused_before_training(tmp_path, npz, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(f"model: seed000-first\ndataset: 'npz:{npz}'\nlr: .nan\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run.yaml: lr is nan; valid: a finite number" in err and err.count("\n") == 1
    assert not out.exists()


DEEP = "[" * 100_000 + "]" * 100_000


def test_a_saved_module_description_nested_deep_is_one_line(tmp_path):
    """module.json (the description beside your own nn.Module's weights) is read bounded."""
    from cnnkit.model.module import ModuleModel

    ModuleModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)),
                input_shape=(4, 4, 1)).save(tmp_path / "m")
    (tmp_path / "m" / "module.json").write_text(DEEP)
    with pytest.raises(CnnkitError, match=r"module.json: corrupt \(lists and mappings nested "
                                          "too deep; valid: at most 64 levels\\)"):
        cnnkit.load(tmp_path / "m", module=torch.nn.Sequential())


def test_a_run_whose_state_is_nested_deep_has_no_saved_epoch(tmp_path):
    """The epoch a run's state holds (what --nproc resumes from) is read bounded: a state.json
    nested 100,000 deep is no state, not a RecursionError."""
    run = RunDir(tmp_path / "run")
    write_state(run.state_dir, {"w": torch.ones(2)}, {"epoch": 3})
    assert run.saved_epoch() == 3
    (run.state_dir / "state.json").write_text(DEEP)
    assert run.saved_epoch() is None
