"""`cnnkit inspect MODEL_OR_RUN IMAGE [--layer NAME ...] [--class C] [--out DIR]`: what the
network sees in one image, as PNG files (cnnkit.look.inside.save_inside)."""
from __future__ import annotations


def register(sub) -> None:
    from cnnkit.cli import flags

    p = sub.add_parser(
        "inspect", help="draw what a model sees in one image: feature maps, filters, Grad-CAM",
        description="Writes one PNG per Conv2D and pooling layer's feature maps (one tile per "
                    "channel), the first layer's filters, Grad-CAM over the image for the "
                    "predicted class (and --class), and the gradient saliency map. The image "
                    "may be any size, gray or colour: it is converted to the model's input "
                    "as `cnnkit predict` converts it.")
    flags.add(p, "MODEL_OR_RUN")
    p.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, ...)")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="draw this layer's output; repeat for more (default: every Conv2D and "
                        "pooling layer; `cnnkit summary MODEL` lists the names)")
    p.add_argument("--class", dest="class_", metavar="C",
                   help="also draw Grad-CAM for class C, a class number or name (the predicted "
                        "class is always drawn)")
    p.add_argument("--out", metavar="DIR", help="the folder to write the PNGs to (default: "
                   f"{flags.OUT_ROOT}/inspect-<model>-<image>)")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from pathlib import Path

    from cnnkit.errors import CnnkitError
    from cnnkit.look.inside import save_inside
    from cnnkit.model.inputs import to_pixels
    from cnnkit.model.resolve import open_model

    model, _ = open_model(args.model)
    image = Path(args.image)
    if not image.is_file():
        raise CnnkitError(f"{image}: no such image file")
    pixels, _ = to_pixels(image, model._require_input())  # a file that is no image fails here
    class_index = _class_index(model, args.class_)
    from cnnkit.cli.flags import default_out
    from cnnkit.train.progress import working

    out = args.out or default_out("inspect", args.model, f"-{image.stem}")
    try:
        with working(f"Drawing feature maps, filters and saliency for {image.name}"):
            files = save_inside(model, pixels, out, layers=args.layer,
                                class_index=class_index)
    except CnnkitError as e:
        raise e.restated("--class") from None
    probs = model.predict(pixels)[0]
    pred = int(probs.argmax())
    names = model.class_names or [str(i) for i in range(len(probs))]
    print(f"{image}: predicted class {pred} '{names[pred]}' with probability {probs[pred]:.3f}")
    print(f"Wrote {len(files)} pictures:")
    for f in files:
        print(f"  {f}")
    return 0


def _class_index(model, text: str | None) -> int | None:
    """--class as a number, or as one of the model's class names."""
    from cnnkit.errors import CnnkitError
    from cnnkit.model.outputs import class_count

    if text is None:
        return None
    model.check_classifier()
    k = class_count(model.output_shape[0])
    names = model.class_names or []
    if text in names:
        return names.index(text)
    try:
        index = int(text)
    except ValueError:
        known = f"a class name ({', '.join(names)}) or " if names else ""
        raise CnnkitError(f"--class {text!r} is not a class; valid: {known}a number from 0 to "
                          f"{k - 1}") from None
    if not 0 <= index < k:
        raise CnnkitError(f"--class {index} is out of range; valid: a class from 0 to {k - 1}")
    return index
