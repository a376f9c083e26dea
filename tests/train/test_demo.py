"""The product's first impression: `cnnkit demo` and the recipes on real data."""
import json
from pathlib import Path

import pytest

from cnnkit.cli import main
from cnnkit.runs.recipes import RECIPES

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_every_recipe_names_a_preset_or_a_backbone_and_valid_options():
    from cnnkit.model.applications.finetune import backbone_names
    from cnnkit.model.presets import PRESETS
    from cnnkit.runs.spec import RunSpec
    from cnnkit.train.config import TrainConfig

    assert {"seed000", "seed002", "seed003", "seed004", "fast", "best", "finetune"} <= set(RECIPES)
    for recipe in RECIPES.values():
        assert recipe.model in PRESETS or recipe.run["backbone"] in backbone_names()
        TrainConfig.from_dict(recipe.train)  # raises on a bad value
        RunSpec.from_recipe(recipe.name, dataset=recipe.dataset or "digits")  # every option


def test_demo_falls_back_to_digits_when_fashion_mnist_is_unavailable(tmp_path, monkeypatch, capsys):
    import cnnkit.data.mnist as mnist
    from cnnkit.errors import CnnkitError

    monkeypatch.setattr(mnist, "locate", lambda name, data_dir=None: None)
    monkeypatch.setenv("LANG", "C.UTF-8")

    def offline(*args, **kwargs):
        raise CnnkitError("cannot download fashion-mnist: this machine looks offline")
    monkeypatch.setattr(mnist, "load_mnist_family", offline)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    captured = capsys.readouterr()
    assert "falling back to scikit-learn's digits" in captured.err
    page = tmp_path / "demo" / "report.html"
    last = captured.out.rstrip().splitlines()[-2:]  # the page and its URL end the output
    assert last == [f"Done. Open the report in a browser: {page}", f"  {page.as_uri()}"]
    assert page.is_file() and "<html" in page.read_text()[:200].lower()
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85


def test_demo_speaks_korean_where_lang_is_korean(tmp_path, monkeypatch, capsys):
    """The demo's own lines, in Korean; the run is the one above (stood in for here: its
    progress lines are the run's, not the demo's)."""
    import types

    import cnnkit.data.mnist as mnist
    import cnnkit.runs.run as runs
    from cnnkit.errors import CnnkitError

    monkeypatch.setattr(mnist, "locate", lambda name, data_dir=None: None)
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")

    def offline(*args, **kwargs):
        raise CnnkitError("cannot download fashion-mnist: this machine looks offline")
    monkeypatch.setattr(mnist, "load_mnist_family", offline)
    specs = []
    monkeypatch.setattr(runs, "run", lambda spec, command: specs.append(spec) or
                        types.SimpleNamespace(run_dir=tmp_path / "demo"))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    captured = capsys.readouterr()
    page = tmp_path / "demo" / "report.html"

    assert captured.err.splitlines() == [
        "이 컴퓨터에 fashion-mnist이(가) 없어 내려받습니다 (Debian: apt-get install "
        "dataset-fashion-mnist)",
        "참고: cannot download fashion-mnist: this machine looks offline",
        "참고: scikit-learn의 digits(실제 8×8 손글씨 숫자 1,797개)로 대신 학습합니다"]
    assert captured.out.splitlines() == [
        "cnnkit demo: digits에서 레시피 'fast' (" + RECIPES["fast"].description + ") 학습", "",
        f"끝났습니다. 브라우저에서 보고서를 여세요: {page}", f"  {page.as_uri()}"]
    assert specs[0].dataset == "digits"


def test_demo_lang_beats_lang_and_a_bad_one_is_refused(monkeypatch, capsys):
    from cnnkit.cli.demo import demo_language

    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    assert (demo_language(None), demo_language("en")) == ("ko", "en")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert (demo_language(None), demo_language("ko")) == ("en", "ko")
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--lang", "jp"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'jp'" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fast_recipe_on_real_fashion_mnist(tmp_path):
    """A quick cut of the fast recipe on the real data: 12,000 images, one epoch."""
    run = tmp_path / "fast"
    assert main(["train", "--recipe", "fast", "--limit", "12000", "--epochs", "1", "--seed", "0",
                 "--quiet", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_images"] == 10_000
    assert metrics["test_accuracy"] > 0.78  # one epoch on a fifth of the data
    assert "T-shirt/top" in (run / "report.md").read_text()
