"""A run's data and model, before anything is written: the dataset and its splits
(`prepare_data`, `load_splits`: every source at the run's size and channels, a test split held
out where the dataset has none), the model fitted to them (`build_model`: a preset rebuilt for
the data, a model file, a saved model, a backbone with a new head, your own nn.Module), and the
augmentation checked (`check_augment`). cnnkit.runs.run calls them in that order; report pages,
evaluation, search and cross-validation load data the same way through them."""
from __future__ import annotations

from cnnkit.errors import CnnkitError
from cnnkit.runs.spec import RunSpec

TEST_FRACTION = 0.2  # held out as the test split for datasets without an official one


def prepare_data(spec, model_shape=None, channels=None):
    """(dataset, splits) where splits maps train/val/test to (x, y) or None. `spec` is a
    RunSpec or the options of a config.json; `channels` without `model_shape`: the images'
    own size, in that many channels."""
    import torch

    from cnnkit.data import load_dataset
    from cnnkit.data.rows import take  # a mapped set's splits: index arrays, not copies
    from cnnkit.data.split import stratified_split, train_val_split

    if isinstance(spec, dict):
        spec = RunSpec.from_dict(spec).resolved()
    # the run's own image_size/channels first, else a given model's (a folder has no size),
    # else `channels` (a backbone's RGB)
    channels = spec.channels or (model_shape[2] if model_shape else channels)
    size = spec.image_size or (tuple(model_shape[:2]) if model_shape else None)
    # a named set held in memory is converted once --limit has picked: a quick trial at
    # 160x160 converts (and caches) its own images, not all 70,000 (folders decode at the size)
    later = bool(spec.limit and (channels or size)) and not spec.dataset.startswith(
        ("folder:", "npz:", "csv:", "parquet:", "hf:"))
    ds = load_dataset(spec.dataset, data_dir=spec.data_dir, channels=None if later else channels,
                      size=None if later else size, label_column=spec.label_column,
                      image_root=spec.image_root)
    x, y = ds.x_train, ds.y_train
    if ds.has_test:
        test = (ds.x_test, ds.y_test)
    else:  # no official test split: hold one out, stratified, reproducibly
        keep, held = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION), seed=0,
                                      class_names=ds.class_names)
        test, x, y = (take(x, held), y[held]), take(x, keep), y[keep]
    if spec.limit:
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(spec.seed))
        pick = pick[:spec.limit].sort().values
        x, y = take(x, pick), y[pick]
    if later:
        from cnnkit.data import Dataset, convert

        ds = convert(Dataset(ds.name, ds.class_names, x, y, *test, source=ds.source,
                             info=ds.info), channels, size)
        x, y, test = ds.x_train, ds.y_train, (ds.x_test, ds.y_test)
    val = None
    if spec.fold:  # one fold of a stratified k-fold of the training data is the validation
        from cnnkit.data.split import kfold_indices

        tr, va = kfold_indices(y, spec.fold["k"], seed=spec.fold.get("seed", 0),
                               class_names=ds.class_names)[spec.fold["index"]]
        x, y, val = take(x, tr), y[tr], (take(x, va), y[va])
    elif getattr(ds, "x_val", None) is not None:  # a folder's own validation/: train stays whole
        val = (ds.x_val, ds.y_val)
    elif spec.val_split:
        tr, va = train_val_split(y, spec.val_split, seed=spec.seed, class_names=ds.class_names)
        x, y, val = take(x, tr), y[tr], (take(x, va), y[va])
    elif spec.val_from_test:
        val = test
    return ds, {"train": (x, y), "val": val, "test": test}


def load_splits(spec: RunSpec, module=None):
    """The dataset and its splits. Folders have no size of their own: they are brought to a
    given model's input, as every dataset is to a resumed run's own copy (a backbone's RGB at
    --image-size, say). Other datasets keep theirs, and a model that does not fit them is an
    error (build_model says so); a preset is rebuilt for the data instead. A user's module
    states no input shape: a folder keeps its own size for it."""
    from cnnkit.model.files import resolve_model
    from cnnkit.model.resolve import preset_name

    if spec.backbone is not None:  # RGB, at --image-size or the data's own size
        return prepare_data(spec, channels=3)
    shape = None
    held = isinstance(spec.model, str) and spec.model.startswith("saved:")  # a resume's copy
    if (held or spec.dataset.startswith("folder:")) and preset_name(spec.model) is None \
            and module is None:  # the data brought to the model's size and channels
        shape = resolve_model(spec.model).input_shape
    return prepare_data(spec, shape)


def build_model(spec: RunSpec, ds, module=None):
    """(model, note): the model to train, fitted to the data. A preset adapts to the data's
    shape and classes, and `note` says so in one line (None when it did not have to). A
    user's module is wrapped as it is (a ModuleModel): it must give one logit per class."""
    from cnnkit.model.files import resolve_model
    from cnnkit.model.outputs import check_classes
    from cnnkit.model.presets import PRESETS, create_model
    from cnnkit.model.resolve import preset_name
    from cnnkit.runs.backbone import backbone_model

    note = None
    if module is not None:
        from cnnkit.model.module import ModuleModel

        model = ModuleModel(module, input_shape=ds.image_shape, class_names=ds.class_names)
        try:
            classes = model.output_classes()
        except RuntimeError as e:  # the module's own shape arithmetic, on the data's images
            raise CnnkitError(f"{model.name} does not take {ds.name}'s {_shape(ds.image_shape)} "
                              f"images (as a batch (B, {ds.image_shape[2]}, "
                              f"{ds.image_shape[0]}, {ds.image_shape[1]})): "
                              f"{str(e).splitlines()[0]}") from None
        check_classes(classes, ds.num_classes, spec.dataset)
        model.dataset = spec.dataset
        return model, None
    if spec.backbone is not None:  # a pretrained network with a new head (runs/backbone.py)
        model = backbone_model(spec, ds)
    elif preset_name(spec.model) is not None:
        preset = PRESETS[preset_name(spec.model)]
        model = create_model(preset.name, input_shape=ds.image_shape, num_classes=ds.num_classes)
        if preset.input_shape != ds.image_shape or preset.num_classes != ds.num_classes:
            note = (f"preset {preset.name} is defined for {_shape(preset.input_shape)} images and "
                    f"{preset.num_classes} classes; rebuilt with the same layers for "
                    f"{ds.name}'s {_shape(ds.image_shape)} images and {ds.num_classes} classes")
    else:
        model = resolve_model(spec.model)
    model.check_classifier()
    if tuple(model.input_shape) != tuple(ds.image_shape):
        raise CnnkitError(f"the model's input shape {tuple(model.input_shape)} does not fit the "
                          f"data's images {tuple(ds.image_shape)} (H, W, C)")
    check_classes(model.output_shape[0], ds.num_classes, spec.dataset)
    model.class_names = list(ds.class_names)
    model.dataset = spec.dataset
    if spec.init_from:
        from cnnkit.train.transfer import init_from

        model = init_from(model, spec.init_from, ds.num_classes, spec.freeze)
    return model, note


def _shape(shape) -> str:
    return "×".join(map(str, shape))


def check_augment(augment: dict | None) -> None:
    """Every augmentation argument, checked one by one so the error names the option."""
    if not augment:
        return
    import inspect

    from cnnkit.data.augment import Augmenter

    valid = sorted(set(inspect.signature(Augmenter).parameters) - {"seed"})
    for key, value in augment.items():
        if key not in valid:
            raise CnnkitError(f"unknown augmentation option {key!r}; valid: {', '.join(valid)}")
        try:
            Augmenter(**{key: value})
        except CnnkitError as e:
            raise CnnkitError(str(e), option=key, value=value) from None


def check_balance(config, ds, splits) -> str | None:
    """The class weights checked against the data (an unknown class name stops the run before
    anything is written), and a warning when the training classes are imbalanced and neither
    class_weight nor sampler says what to do about it."""
    from cnnkit.data.balance import class_counts, class_weights, imbalance_note

    y = splits["train"][1]
    class_weights(config.class_weight, y, ds.class_names)
    if config.class_weight is None and config.sampler is None:
        return imbalance_note(class_counts(y, ds.num_classes), ds.class_names)
    return None
