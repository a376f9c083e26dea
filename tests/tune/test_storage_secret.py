"""A study on a password-protected storage keeps no password on disk: study.json and every
other file it writes hold the URL redacted, and a resume finds the whole URL again from
--storage or $CNNKIT_STORAGE (the server here trusts any password: what is checked is what
cnnkit writes and which URL it asks for)."""
from __future__ import annotations

import json

import optuna
import pytest

from cnnkit.cli import main
from cnnkit.search.storage import redacted
from _tune_helpers import write_space

SECRET = "s3cret-Pa55"


def _secret_url(postgres_url: str) -> str:
    return postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1)


def _files_holding(root, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def _trials(url: str, name: str) -> int:
    url = url.replace("postgresql://", "postgresql+psycopg://")
    return len(optuna.load_study(study_name=name, storage=url).get_trials())


def test_no_file_a_study_writes_holds_the_password_and_resume_finds_the_url(
        tmp_path, capsys, monkeypatch, postgres_url):
    monkeypatch.delenv("CNNKIT_STORAGE", raising=False)
    url, out = _secret_url(postgres_url), tmp_path / "study"
    space = write_space(tmp_path / "space.yaml", {"lr": [0.01, 0.02]}, base={"epochs": 1})
    assert main(["tune", str(space), "--sampler", "random", "--trials", "1", "--seed", "0",
                 "--pruner", "none", "--quiet", "--storage", url, "--study", "secret",
                 "--out", str(out)]) == 0
    assert _files_holding(out, SECRET) == []
    shown = json.loads((out / "study.json").read_text())["storage"]
    assert shown == postgres_url.replace("postgres@", "postgres:***@") == redacted(url)

    # without the URL: one line saying how to give it, nothing run, nothing written
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["tune", "--resume", str(out), "--trials", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and SECRET not in err, err
    assert "kept without its password" in err and "$CNNKIT_STORAGE" in err, err
    assert _trials(url, "secret") == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    # another storage given again is refused, naming it without its password
    other = url.replace("127.0.0.1", "localhost")
    assert main(["tune", "--resume", str(out), "--storage", other, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not the study's own storage" in err and SECRET not in err, err

    # the URL from the environment, then from --storage: each resume runs one more trial
    monkeypatch.setenv("CNNKIT_STORAGE", url)
    assert main(["tune", "--resume", str(out), "--trials", "2", "--quiet"]) == 0
    assert _trials(url, "secret") == 2
    monkeypatch.delenv("CNNKIT_STORAGE")
    assert main(["tune", "--resume", str(out), "--trials", "3", "--quiet", "--storage",
                 url]) == 0
    assert _trials(url, "secret") == 3
    assert _files_holding(out, SECRET) == []


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:p%40ss@db:5432/optuna", "postgresql://u:***@db:5432/optuna"),
    ("postgresql+psycopg://u:pw@db/optuna", "postgresql+psycopg://u:***@db/optuna"),
    ("postgresql://u@db/optuna?password=pw&sslmode=require",
     "postgresql://u@db/optuna?password=***&sslmode=require"),
    ("postgresql://u@db/optuna", "postgresql://u@db/optuna"),
    ("sqlite:///study.db", "sqlite:///study.db"),
])
def test_redacted_takes_out_every_password(url, shown):
    assert redacted(url) == shown
