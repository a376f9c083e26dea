"""A run's "ran_on" record (config.json, cnnkit.runs.provenance) in words: one line for the
reports, a short form for the table of `cnnkit runs`. Older runs have no record: "" then."""
from __future__ import annotations

from html import escape


def _git(rec: dict) -> str:
    git = rec.get("git")
    if not isinstance(git, dict) or not git.get("commit"):
        return "not a git repository"
    return f"git {git['commit'][:12]}" + (" (uncommitted changes)" if git.get("dirty") else "")


def _numbers(cpu: dict) -> str:
    """' family 26 model 2' where the record has them."""
    return (f" family {cpu['family']} model {cpu['model_number']}"
            if cpu.get("family") and cpu.get("model_number") else "")


def ran_on_text(rec: dict | None) -> str:
    """'cnnkit 0.1.0, torch 2.13.0, Python 3.12.3, numpy 2.3.1; Linux 6.8; CPU Intel Xeon
    (avx2, avx512f), 2 cores; git 5daf333c1a2b; data crc32:e144e0f6'."""
    if not isinstance(rec, dict):
        return ""
    cpu = rec.get("cpu") or {}
    flags = ", ".join(cpu.get("flags") or []) or "no vector flags read"
    return (f"cnnkit {rec.get('cnnkit')}, torch {rec.get('torch')}, Python {rec.get('python')}, "
            f"numpy {rec.get('numpy')}; {rec.get('os')}; CPU {cpu.get('model', '?')}"
            f"{_numbers(cpu)} ({flags}), {cpu.get('cores', '?')} cores; {_git(rec)}; "
            f"data {rec.get('data')}")


def ran_on_short(rec: dict | None) -> str:
    """'torch 2.13.0, 5daf333*, e144e0f6': torch, the commit (* uncommitted changes), the
    data's fingerprint; "—" for a run that recorded none."""
    if not isinstance(rec, dict):
        return "—"
    git = rec.get("git")
    commit = (git["commit"][:7] + ("*" if git.get("dirty") else "")
              if isinstance(git, dict) and git.get("commit") else "no git")
    data = str(rec.get("data") or "?").removeprefix("crc32:")
    return f"torch {rec.get('torch')}, {commit}, {data}"


def checkup_section(ran_on: dict | None, findings: list[dict] | None) -> str:
    """report.html's "Doctor" section: each finding (metrics.json's "doctor") as its code,
    what the figures show and the next command, then what the run ran on."""
    from cnnkit.look.html_parts import Raw, note, table

    if findings is None:
        out = note("no findings recorded: the run has not finished (cnnkit doctor RUN looks)")
    elif not findings:
        out = "<p>No problems found.</p>"
    else:
        out = table(["code", "what the run shows", "try"],
                    [[f["code"], f["message"], Raw(f"<code>{escape(f['next'])}</code>")]
                     for f in findings], cls="doctor")
    text = ran_on_text(ran_on)
    return out + (note("ran on: " + text) if text else "")
