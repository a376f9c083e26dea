"""A trained model scored on a dataset split: `cnnkit.evaluate("runs/a")`.

What `cnnkit evaluate` prints, as a library call: the split is the run's own test split when a
run directory is given (held out by the run where the dataset has none), else the dataset's.
Images go through the input contract, the forward pass and the output contract as in
`predict` (`cnnkit.model.predict.predict_proba`), in the Trainer's evaluation batches, so a
run's test accuracy and its evaluation agree to the digit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import CnnkitError, one_of
from cnnkit.model.resolve import is_onnx_file, open_model
from cnnkit.model.runtime import RUNTIMES, auto_runtime
from cnnkit.io.rundir import RunDir

SPLITS = ("test", "train")


@dataclass
class Evaluation:
    """The classification report (loss, accuracy, per class, confusion matrix) of one split,
    with the images, labels and probabilities it was computed from."""

    report: dict
    dataset: str
    split: str
    class_names: list[str]
    x: object = field(repr=False)  # uint8 (N, H, W, C)
    y: object = field(repr=False)  # int64 (N,)
    probs: object = field(repr=False)  # float (N, K) numpy
    run_dir: Path | None = None
    runtime: str = "torch"  # what computed `probs`: torch or onnx

    @property
    def accuracy(self) -> float:
        return self.report["accuracy"]


def evaluate(model_or_run, dataset: str | None = None, data_dir=None, split: str = "test",
             device: str = "auto", runtime: str = "auto",
             threads: int | None = None, module=None) -> Evaluation:
    """Score a saved model, a run directory's best model, a Sequential or an exported .onnx
    file on `split`. A run of your own nn.Module (or its best/) needs an instance of the
    class to load the weights into: `evaluate("runs/cnn", module=CNN())`; it runs on torch. runtime 'torch' is `predict`'s forward pass (on `device`);
    'onnx' predicts through `cnnkit.Predictor` (onnxruntime on the CPU, `threads` intra-op
    threads), whose probabilities match torch's to ~1e-7; 'auto' is onnx from enough images
    on (`cnnkit.model.runtime.auto_runtime`)."""
    from cnnkit.look.metrics import classification_report
    from cnnkit.model.outputs import check_classes
    from cnnkit.model.provided import provided

    Predictor = provided("onnx_predictor")  # noqa: N806  cnnkit.serve.predictor, above runs

    if split not in SPLITS:
        raise one_of("split", split, SPLITS)
    if runtime not in RUNTIMES:
        raise one_of("runtime", runtime, RUNTIMES)
    predictor = None
    if hasattr(model_or_run, "net"):
        model, run_dir = model_or_run, None
    elif is_onnx_file(model_or_run):
        predictor = Predictor(model_or_run, runtime=runtime, threads=threads)
        model, run_dir = None, None
    else:
        model, run_dir = open_model(model_or_run, module=module)
    src = predictor if model is None else model  # a bare .onnx file: what its metadata says
    name, ds, x, y = split_data(model_or_run, src.input_shape, src.dataset, run_dir, dataset,
                                data_dir, split)
    check_classes(len(src.class_names) if model is None else model.output_shape[0],
                  ds.num_classes, name)
    foreign = getattr(model, "foreign", False)  # a user's module: torch is its only runtime
    if model is not None and (runtime == "onnx" or (not foreign and
                                                    auto_runtime(runtime, len(x)) == "onnx")):
        predictor = Predictor(model, runtime="onnx", threads=threads)
    if predictor is not None:
        probs = predictor.predict(x)
    else:
        from cnnkit.model.predict import predict_proba
        from cnnkit.train.config import TrainConfig
        from cnnkit.train.device import resolve_device
        from cnnkit.train.threads import kept_threads, set_threads, settle_threads

        model.net.to(resolve_device(device))
        with kept_threads():
            set_threads(settle_threads(threads)[0])
            probs = predict_proba(model, x, batch_size=TrainConfig.eval_batch_size)
    names = src.class_names or ds.class_names
    report = classification_report(probs, y.numpy(), names)
    return Evaluation(report, name, split, list(names), x, y, probs, run_dir,
                      "torch" if predictor is None else predictor.runtime)


def split_data(model_or_run, input_shape, recorded: str | None, run_dir, dataset=None,
               data_dir=None, split: str = "test", or_train: bool = False):
    """(dataset name, Dataset, uint8 images (N, H, W, C) at `input_shape`, labels (N,)) that
    a model is scored on: a run's own test (or train) split (the test held out by the run where
    the dataset has none), else `split` of `dataset` or of the dataset the model records (`recorded`);
    `or_train`: the train split where the dataset has no test split (ONNX parity images)."""
    from cnnkit.data import load_dataset
    from cnnkit.model.inputs import to_pixels

    name = dataset or recorded
    if not name:
        raise CnnkitError(f"{model_or_run}: the model does not record its dataset; say which "
                          "(dataset=..., --dataset)")
    h, w, c = input_shape
    if run_dir is not None and not dataset and split in ("test", "train"):
        from cnnkit.runs.prepare import prepare_data

        options = RunDir(run_dir).options
        ds, splits = prepare_data(options, tuple(input_shape)
                                  if options["dataset"].startswith("folder:") else None)
        x, y = splits[split]
    else:
        ds = load_dataset(name, data_dir=data_dir, channels=c, size=(h, w))
        if split == "test" and not ds.has_test and or_train:
            split = "train"
        if split == "test" and not ds.has_test:
            raise CnnkitError(f"{name} has no official test split; use split='train' (--split train)")
        x, y = (ds.x_test, ds.y_test) if split == "test" else (ds.x_train, ds.y_train)
    return name, ds, to_pixels(x, tuple(input_shape))[0], y  # a no-op at the model's shape
