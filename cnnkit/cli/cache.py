"""`cnnkit cache`: what cnnkit keeps in its caches, with sizes; `cnnkit cache clear [PART ...]`
removes all of it or the parts named (cnnkit.data.cache)."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    from cnnkit.data.cache import PART_NAMES

    parts = "|".join(PART_NAMES)
    p = sub.add_parser("cache", help="list what cnnkit keeps in its caches, with sizes; "
                       "clear all or part of it",
                       description="Lists cnnkit's caches: datasets downloaded and decoded, "
                       "decoded image folders, decoded npz files, pretrained weights and the "
                       "C++ kernels compiled for this CPU, with their sizes and folders "
                       "($CNNKIT_DATA, $CNNKIT_CACHE, else ~/.cache/cnnkit). `clear` removes "
                       "them (only what cnnkit wrote); all of it is rebuilt or downloaded "
                       "again when needed.",
                       epilog="examples:\n  cnnkit cache\n  cnnkit cache clear folders\n"
                       "  cnnkit cache clear",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", default="list", choices=("list", "clear"),
                   metavar="list|clear", help="list the caches (default) or clear them")
    p.add_argument("parts", nargs="*", metavar="PART",
                   help=f"with clear: the parts to remove, {parts} (default: all)")
    from cnnkit.cli import flags

    flags.add(p, "--json", " instead of text", action="store_true")
    p.set_defaults(func=cmd_cache)


def cmd_cache(args) -> int:
    from cnnkit.data.cache import cache_parts, cache_text, clear_cache, format_size
    from cnnkit.errors import CnnkitError

    if args.action == "list":
        if args.parts:
            raise CnnkitError(f"cnnkit cache lists every part; to remove some: cnnkit cache "
                              f"clear {' '.join(args.parts)}")
        parts = cache_parts()
        if args.json:
            print(json.dumps([{"part": p.name, "folder": str(p.folder), "bytes": p.bytes,
                               "entries": [vars(e) for e in p.entries]} for p in parts],
                             indent=2))
        else:
            print(cache_text(parts))
        return 0
    freed = clear_cache(args.parts)
    which = ", ".join(args.parts) if args.parts else "every part"
    if args.json:
        print(json.dumps({"cleared": list(args.parts) or None, "bytes": freed}))
    else:
        print(f"Cleared {which} of cnnkit's cache: {format_size(freed)} freed")
    return 0
