"""`cnnkit data list | show | augment`: see what datasets there are and what they hold.

Only the stdlib is imported here; torch, Pillow and matplotlib load inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import sys

from cnnkit.cli import flags


def parse_size(text: str) -> tuple[int, int]:
    """'28x28', '32,32' or '28' → (H, W) for --size (cnnkit.data.check_size's rules)."""
    from cnnkit.data import check_size
    from cnnkit.errors import CnnkitError

    try:
        return check_size(text, option="size")
    except CnnkitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    flags.add(p, "DATASET")
    flags.add(p, "--data-dir", " (and where missing ones are downloaded to)")
    p.add_argument("--split", default="train", help="train or test (default: train)")
    p.add_argument("--channels", type=int, help="convert to 1 (grayscale) or 3 (RGB) channels")
    p.add_argument("--size", type=parse_size, metavar="HxW", help="resize images, e.g. 28x28")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading missing files")
    flags.add(p, "--seed", " (default: 0)", type=int, default=0)
    from cnnkit.cli.train import add_table_flags

    add_table_flags(p)


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="list, inspect and augment datasets",
                                 description="List, inspect and augment datasets.")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    p = sub.add_parser("list", help="dataset names and whether each is available offline")
    flags.add(p, "--data-dir", " (as well as the usual places)")
    flags.add(p, "--json", " instead of a table", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="sizes, shape, classes, pixel statistics and a sample grid")
    _add_dataset_args(p)
    p.add_argument("--out", metavar="FILE", help="the PNG to write a grid of sample images with "
                   "their labels to (default: none, tables only)")
    p.add_argument("--n", type=int, default=25, help="images in the grid (default: 25)")
    flags.add(p, "--json", " instead of tables", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("augment", help="a grid of one image and its augmented variants",
                       description="Write a grid of one image and random augmentations of it, "
                                   "with Keras ImageDataGenerator's options (all off by default).")
    _add_dataset_args(p)
    p.add_argument("--out", metavar="FILE", help="the grid to write, a PNG (default: "
                   f"{flags.OUT_ROOT}/augment-<dataset>.png)")
    p.add_argument("--index", type=int, default=0, help="which image of the split (default: 0)")
    p.add_argument("--n", type=int, default=15, help="augmented variants (default: 15)")
    from cnnkit.cli.train import AUGMENT_FLAGS, AUGMENT_SWITCHES, flag

    for name, typ, text in AUGMENT_FLAGS:  # the same options as cnnkit train's
        p.add_argument(flag(name), type=typ, default=0.0, help=f"{text} (default: 0)")
    for name, text in AUGMENT_SWITCHES:
        p.add_argument(flag(name), action="store_true", help=text)
    p.add_argument("--fill-mode", default="nearest", help="nearest, constant, reflect or wrap (default: nearest)")
    p.add_argument("--cval", type=float, default=0.0, help="fill value for --fill-mode constant, 0-255 (default: 0)")
    p.set_defaults(func=cmd_augment)


def _load(args):
    from cnnkit.data import load_dataset

    return load_dataset(args.dataset, data_dir=args.data_dir, channels=args.channels,
                        size=args.size, download=args.download, label_column=args.label_column,
                        image_root=args.image_root)


def _split(ds, split: str):
    from cnnkit.errors import CnnkitError, one_of

    if split not in ("train", "test"):
        raise one_of("split", split, ["train", "test"])
    if split == "test" and not ds.has_test:
        raise CnnkitError(f"dataset {ds.name!r} has no test split; use --split train")
    return (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)


def _check_positive(name: str, value: int) -> None:
    from cnnkit.errors import CnnkitError

    if value < 1:
        raise CnnkitError(f"{name} must be at least 1; got {value}")


def cmd_list(args) -> int:
    from cnnkit.data import dataset_status

    rows = dataset_status(data_dir=args.data_dir)
    if args.json:
        print(json.dumps([{"name": n, "offline": ok, "where": w} for n, ok, w in rows], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="datasets")
    for col in ("name", "offline now", "where / how"):
        table.add_column(col)
    for name, ok, where in rows:
        table.add_row(name, "[green]yes[/]" if ok else "[yellow]no[/]", where)
    Console().print(table)
    return 0


def _print_description(info: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cnnkit.errors import printable

    console = Console()
    h, w, c = info["image_shape"]
    # names and paths are the user's: shown as text, never read as rich markup ('[red]cat')
    console.print(f"[bold]{escape(printable(info['name']))}[/]  from "
                  f"{escape(printable(str(info['source'])))}")
    console.print(f"image shape (H, W, C): ({h}, {w}, {c}), {info['num_classes']} classes")
    splits = list(info["splits"])
    table = Table(title="images per class")
    table.add_column("class")
    for s in splits:
        table.add_column(s, justify="right")
    for name in info["class_names"]:
        table.add_row(escape(name), *(str(info["splits"][s]["class_counts"][name])
                                      for s in splits))
    table.add_row("[bold]total[/]", *(f"[bold]{info['splits'][s]['count']}[/]" for s in splits))
    console.print(table)
    px = info["pixels"]
    line = f"train pixels (0-255): mean {px['mean']:.2f}, std {px['std']:.2f}, min {px['min']}, max {px['max']}"
    if "channel_mean" in px:
        line += f"; per channel mean {px['channel_mean']}, std {px['channel_std']}"
    console.print(line)
    if info.get("skipped"):
        from rich.markup import escape

        from cnnkit.data.folder import skipped_text

        console.print(f"[yellow]skipped {escape(skipped_text(info['skipped']))}[/]")
    if info.get("imbalance"):
        console.print(f"[yellow]Warning: {escape(printable(info['imbalance']))}[/]")


def cmd_show(args) -> int:
    from cnnkit.data.show import check_grid_path, describe, save_image_grid

    if args.out:
        check_grid_path(args.out)
    _check_positive("--n", args.n)
    ds = _load(args)
    x, y = _split(ds, args.split)
    info = describe(ds)
    if args.out:
        import torch

        g = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(len(x), generator=g)[: args.n]
        titles = [f"{ds.class_names[int(y[i])]} (#{int(i)})" for i in idx]
        save_image_grid(x[idx], titles, args.out,
                        suptitle=f"{ds.name} {args.split}: {len(idx)} of {len(x)} images")
        info["grid"] = str(args.out)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_description(info)
        if args.out:
            print(f"wrote {args.out}")
    return 0


def cmd_augment(args) -> int:
    from cnnkit.data.show import check_grid_path, save_image_grid

    args.out = args.out or str(flags.default_out("augment", args.dataset, ".png"))
    check_grid_path(args.out)
    _check_positive("--n", args.n)
    from cnnkit.data.augment import Augmenter
    from cnnkit.errors import CnnkitError

    # Built before loading, so a bad option fails at once (and nothing is written).
    from cnnkit.cli.train import AUGMENT_FLAGS, AUGMENT_SWITCHES

    aug = Augmenter(**{name: getattr(args, name) for name, *_ in AUGMENT_FLAGS + AUGMENT_SWITCHES},
                    fill_mode=args.fill_mode, cval=args.cval, seed=args.seed)
    ds = _load(args)
    x, y = _split(ds, args.split)
    if not 0 <= args.index < len(x):
        raise CnnkitError(f"--index {args.index} is out of range; the {args.split} split has "
                          f"images 0..{len(x) - 1}")
    import torch

    one = x[args.index].permute(2, 0, 1).float().div(255)  # (C, H, W) in [0, 1]
    batch = one.unsqueeze(0).expand(args.n, -1, -1, -1).contiguous()  # (n, C, H, W)
    out = aug(batch)
    out = out.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (n, H, W, C)
    images = torch.cat([x[args.index:args.index + 1], out])
    titles = ["original"] + [f"#{i + 1}" for i in range(args.n)]
    label = ds.class_names[int(y[args.index])]
    save_image_grid(images, titles, args.out,
                    suptitle=f"{ds.name} {args.split} #{args.index} ({label}): {aug!r}")
    if aug.is_identity:
        print("note: no augmentation option is on, so every variant equals the original",
              file=sys.stderr)
    print(f"wrote {args.out}")
    return 0
