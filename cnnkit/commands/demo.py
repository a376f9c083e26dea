"""`cnnkit demo`: the first command a newcomer runs (see the README)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train and evaluate a seed model on real data")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from cnnkit.presets import PRESETS, create_model

    for name in PRESETS:
        create_model(name).summary()
        print()
    return 0
