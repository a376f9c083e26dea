"""`cnnkit demo`: the first command a newcomer runs (`make demo`).

Trains the `fast` recipe on the full Fashion-MNIST, evaluates it on the official test images
and names the run's report.html (its path and file:// URL, to open in a browser). Where Fashion-MNIST cannot be found or downloaded, it says so
and trains on scikit-learn's digits instead. Its lines are English or Korean: `--lang ko|en`,
else the LANG environment variable (`ko_KR.UTF-8` is Korean), else English.
"""
from __future__ import annotations

import os
import sys

# The demo's own lines (the run's progress lines are the run's), one table per language.
LINES = {
    "en": {
        "downloading": "{dataset} is not on this machine; downloading it (Debian: "
                       "apt-get install dataset-fashion-mnist)",
        "note": "note: {error}",
        "fallback": "note: falling back to scikit-learn's digits (1,797 real 8×8 handwritten "
                    "digits)",
        "start": "cnnkit demo: recipe {recipe!r} ({description}) on {dataset}",
        "done": "\nDone. Open the report in a browser: {page}\n  {url}",
    },
    "ko": {
        "downloading": "이 컴퓨터에 {dataset}이(가) 없어 내려받습니다 (Debian: "
                       "apt-get install dataset-fashion-mnist)",
        "note": "참고: {error}",
        "fallback": "참고: scikit-learn의 digits(실제 8×8 손글씨 숫자 1,797개)로 대신 학습합니다",
        "start": "cnnkit demo: {dataset}에서 레시피 {recipe!r} ({description}) 학습",
        "done": "\n끝났습니다. 브라우저에서 보고서를 여세요: {page}\n  {url}",
    },
}


def demo_language(lang: str | None = None) -> str:
    """`--lang` if given, else Korean where LANG says so (ko, ko_KR.UTF-8), else English."""
    if lang:
        return lang
    return "ko" if os.environ.get("LANG", "").lower().startswith("ko") else "en"


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train and evaluate a CNN on real data, "
                       "write a run directory with a report")
    p.add_argument("--out", metavar="DIR", help="the run directory to write (default: "
                   "runs/demo-<time>)")
    p.add_argument("--recipe", default="fast", help="recipe to train (default: fast)")
    p.add_argument("--lang", choices=sorted(LINES), metavar="|".join(sorted(LINES)), help="the demo's language: ko (Korean) or en "
                   "(default: from LANG, else en)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    import time

    from cnnkit.errors import CnnkitError
    from cnnkit.io.rundir import REPORT_HTML
    from cnnkit.runs.recipes import get_recipe
    from cnnkit.runs.run import run
    from cnnkit.runs.spec import RunSpec

    lines = LINES[demo_language(args.lang)]
    recipe = get_recipe(args.recipe)
    dataset = recipe.dataset
    try:
        from cnnkit.data.mnist import MNIST_FAMILY, locate

        if dataset in MNIST_FAMILY and locate(dataset) is None:
            print(lines["downloading"].format(dataset=dataset), file=sys.stderr)
            from cnnkit.data import load_dataset

            load_dataset(dataset)
    except CnnkitError as e:
        print(lines["note"].format(error=e), file=sys.stderr)
        print(lines["fallback"], file=sys.stderr)
        dataset = "digits"
    out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = RunSpec.from_recipe(recipe.name, dataset=dataset, seed=0, out=out,
                               epochs=15 if dataset == "digits" else None,  # 1,437 images: more passes
                               verbose=1 if sys.stdout.isatty() else 2)
    print(lines["start"].format(recipe=recipe.name, description=recipe.description,
                                dataset=dataset))
    result = run(spec, command=["cnnkit", *getattr(args, "argv", sys.argv[1:])])
    page = result.run_dir / REPORT_HTML
    print(lines["done"].format(page=page, url=page.resolve().as_uri()))
    return 0
