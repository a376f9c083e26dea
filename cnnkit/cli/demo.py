"""`cnnkit demo`: the first command a newcomer runs (`make demo`).

Trains the `fast` recipe on the full Fashion-MNIST, evaluates it on the official test images
and names the run's report.html (its path and file:// URL, to open in a browser). Where Fashion-MNIST cannot be found or downloaded, it says so
and trains on scikit-learn's digits instead.
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train and evaluate a CNN on real data, "
                       "write a run directory with a report")
    p.add_argument("--out", metavar="DIR", help="the run directory to write (default: "
                   "runs/demo-<time>)")
    p.add_argument("--recipe", default="fast", help="recipe to train (default: fast)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    import time

    from cnnkit.errors import CnnkitError
    from cnnkit.io.rundir import REPORT_HTML
    from cnnkit.runs.recipes import get_recipe
    from cnnkit.runs.run import run
    from cnnkit.runs.spec import RunSpec

    recipe = get_recipe(args.recipe)
    dataset = recipe.dataset
    try:
        from cnnkit.data.mnist import MNIST_FAMILY, locate

        if dataset in MNIST_FAMILY and locate(dataset) is None:
            print(f"{dataset} is not on this machine; downloading it (Debian: "
                  "apt-get install dataset-fashion-mnist)", file=sys.stderr)
            from cnnkit.data import load_dataset

            load_dataset(dataset)
    except CnnkitError as e:
        print(f"note: {e}", file=sys.stderr)
        print("note: falling back to scikit-learn's digits (1,797 real 8×8 handwritten digits)",
              file=sys.stderr)
        dataset = "digits"
    out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = RunSpec.from_recipe(recipe.name, dataset=dataset, seed=0, out=out,
                               epochs=15 if dataset == "digits" else None,  # 1,437 images: more passes
                               verbose=1 if sys.stdout.isatty() else 2)
    print(f"cnnkit demo: recipe {recipe.name!r} ({recipe.description}) on {dataset}")
    result = run(spec, command=["cnnkit", *getattr(args, "argv", sys.argv[1:])])
    page = result.run_dir / REPORT_HTML
    print(f"\nDone. Open the report in a browser: {page}\n  {page.resolve().as_uri()}")
    return 0
