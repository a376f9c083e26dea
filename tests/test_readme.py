"""README.md, run as written: a block that stops working fails here.

How each fenced block is treated (the test id is the line of its opening fence):

- ```python: run as its own fresh `sys.executable` process, in a fresh empty folder, with
  PYTHONPATH at this checkout, MPLBACKEND=Agg and KERAS_BACKEND unset (the blocks use cnnkit's
  own `cnnkit.keras`, never Keras itself); it must exit 0. A block whose first line is
  `# continues the block above` goes on from the Python block before it (which may itself
  continue one): the chain's code runs as one program (one test, `line392+line413`), as a
  reader who runs the blocks in order in one session runs it. Every other block stands alone:
  whatever it needs (an image, a saved model, a run directory) it makes itself. The blocks
  share one CNNKIT_DATA (a dataset is decoded once, as on a reader's machine), never the
  user's own cache.
- A block that ends in `uvicorn.run(...)` serves until stopped: it passes once its server
  answers `/healthz` on the block's address, and is then stopped.
- Stated outputs: a line `print(...)  # VALUE` whose comment begins with a literal value is
  checked against the output. The value is the comment up to its first `;` or its first `, `
  followed by a word outside brackets (`# 1754, as Keras counts them` -> `1754`, `# (4, 10);
  no augmentation at inference` -> `(4, 10)`). A value with a digit and no `...` is literal.
  One with letters (`SGD(learning_rate=0.05, momentum=0.9)`) must appear in the output as
  written, spaces aside; one of numbers and brackets only (`(15, 3)`, `[[8 8] [10 6]]`,
  `13,610`) must appear as a run of the output's numbers, compared as numbers, so numpy's
  `[[ 8.  8.]` matches `[[8 8]`.
- ```yaml and ```toml: each parses; one with `layers:` is a model file and loads with
  cnnkit.load_model_file (both forms: a Sequential and a graph).
- ```bash / ```sh: not run (they train for minutes and start servers); each `cnnkit ...` line
  (also after `torchrun ... -m cnnkit`) is parsed by the cnnkit command's own argparse parser,
  as the command would parse it, without running it: the subcommand, its flags and their values
  must be ones it accepts. A `python -c "..."` line in them runs, in a fresh folder (it makes
  a file the commands read, such as a test image).
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTINUES = "# continues the block above"
TIMEOUT_S = 240  # one block; the whole file takes well under two minutes on 2 cores


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, line of the opening fence, code) for every fenced block, in order."""
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, start, body = line[3:].strip(), number, []
        elif lang is not None and line.startswith("```"):
            blocks.append((lang, start, "\n".join(body) + "\n"))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md: the block opened at line {start} is never closed"
    return blocks


BLOCKS = fenced_blocks(README.read_text(encoding="utf-8"))


def of(*langs: str) -> list[tuple[int, str]]:
    return [(start, code) for lang, start, code in BLOCKS if lang in langs]


def block_id(value) -> str:
    """`line123`: the line of the block's opening fence (the code itself gets no id)."""
    return f"line{value}" if isinstance(value, int) else ""


def python_programs() -> list:
    """One program per chain: a block with the blocks that continue it appended, so a chain
    runs once, as a reader runs it in order (its id names each of its blocks' lines)."""
    chains: list[tuple[list[int], str]] = []
    for start, code in of("python"):
        if code.startswith(CONTINUES):
            assert chains, f"README.md:{start} continues a block, but no Python block precedes it"
            chains[-1][0].append(start)
            chains[-1] = (chains[-1][0], chains[-1][1] + code)
        else:
            chains.append(([start], code))
    return [pytest.param(where(starts), code, id="+".join(f"line{s}" for s in starts))
            for starts, code in chains]


def where(starts: list[int]) -> str:
    return "README.md:" + ", continued at ".join(map(str, starts))


# --- stated outputs ---------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?!\d)|-?\d+(?:\.\d*)?(?:e[-+]?\d+)?")


def stated_value(comment: str) -> str | None:
    """The literal a `print(...)  # comment` states, or None when the comment only describes."""
    depth, end = 0, len(comment)
    for i, ch in enumerate(comment):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and (ch == ";" or re.match(r", [A-Za-z]", comment[i:i + 3])):
            end = i
            break
    value = comment[:end].strip()
    if not re.search(r"\d", value) or "..." in value or re.match(r"[a-z]+ ", value):
        return None
    return value


def numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in _NUMBER.findall(text)]


def shows(output: str, value: str) -> bool:
    if re.search(r"[A-Za-z]", value):
        return re.sub(r"\s+", "", value) in re.sub(r"\s+", "", output)
    want, got = numbers(value), numbers(output)
    return any(got[i:i + len(want)] == want for i in range(len(got) - len(want) + 1))


def expected_outputs(code: str) -> list[str]:
    found = []
    for line in code.splitlines():
        m = re.match(r"\s*print\(.*\)\s+#\s*(.+)$", line)
        if m and (value := stated_value(m.group(1))) is not None:
            found.append(value)
    return found


def test_stated_value_rule():
    # The rule above, on the README's own kinds of comment.
    assert stated_value("1754, as Keras counts them") == "1754"
    assert stated_value("(4, 10); no augmentation at inference") == "(4, 10)"
    optimizer = "SGD(learning_rate=0.05, momentum=0.9)"
    assert stated_value(optimizer) == optimizer
    assert stated_value("13,610") == "13,610"
    assert stated_value("a number, the share of test images right") is None
    assert stated_value("{'loss': ..., 'accuracy': ...}") is None
    assert shows("[[ 8.  8.]\n [10.  6.]]\n", "[[8 8] [10 6]]")
    assert not shows("[[ 8.  8.]\n [10.  7.]]\n", "[[8 8] [10 6]]")
    assert shows("Total params: 13610\n", "13,610")


# --- running the blocks -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """One CNNKIT_DATA for every block of this file: a dataset decoded by one block is reused by
    the next, as on a reader's machine, and the user's own cache stays untouched."""
    return tmp_path_factory.mktemp("readme-data")


def block_env(data_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg", CNNKIT_DATA=str(data_cache))
    return env


def serves(blocks: str, code: str, cwd: Path, env: dict[str, str]) -> None:
    """A block that ends in `uvicorn.run(...)` serves until stopped: it passes once its server
    answers on the address the block names, and is then stopped."""
    host, port = re.search(r'uvicorn\.run\(.*host="([^"]+)", port=(\d+)', code).groups()
    with socket.socket() as probe:  # another server there would answer in its place
        taken = probe.connect_ex((host, int(port))) == 0
    assert not taken, f"{host}:{port} is taken; {blocks} serves there"
    server = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(0.5)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    pytest.fail(f"{blocks} never served on {host}:{port}:\n{output[-3000:]}")


@pytest.mark.slow  # end to end on real data: the blocks train on Fashion-MNIST and digits
@pytest.mark.parametrize("blocks,code", python_programs())
def test_python_block_runs(blocks, code, tmp_path, data_cache):
    if "uvicorn.run(" in code:
        return serves(blocks, code, tmp_path, block_env(data_cache))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=block_env(data_cache),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{blocks} failed:\n{output[-3000:]}"
    for value in expected_outputs(code):
        assert shows(done.stdout, value), (f"{blocks} should print {value}; it "
                                           f"printed:\n{done.stdout[-2000:]}")


# --- model files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("start,code", of("yaml", "toml"), ids=block_id)
def test_config_block_parses(start, code, tmp_path):
    lang = next(lang for lang, s, _ in BLOCKS if s == start)
    data = yaml.safe_load(code) if lang == "yaml" else tomllib.loads(code)
    assert isinstance(data, dict), f"README.md:{start} is not a mapping"
    if "layers" in data:
        import cnnkit

        path = tmp_path / f"model.{lang}"
        path.write_text(code, encoding="utf-8")
        model = cnnkit.load_model_file(path)
        assert model.count_params() > 0


# --- command lines -------------------------------------------------------------------------------
def cnnkit_commands(code: str) -> list[list[str]]:
    """The argument lists of every `cnnkit ...` command in a shell block (`\\` continuations
    joined, comments dropped), also those torchrun or `python -m cnnkit` start."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "cnnkit" and (i == 0 or words[i - 1] == "-m"):
                commands.append(words[i + 1:])
                break
    return commands


SHELL = [(start, code) for start, code in of("bash", "sh") if cnnkit_commands(code)]


@pytest.mark.parametrize("start,code", SHELL, ids=block_id)
def test_shell_block_commands_parse(start, code, capsys):
    from cnnkit.cli import build_parser

    for argv in cnnkit_commands(code):
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            err = capsys.readouterr().err.strip().splitlines()
            pytest.fail(f"README.md:{start}: `cnnkit {shlex.join(argv)}` does not parse (exit "
                        f"{e.code}): {err[-1] if err else ''}")


def python_lines(code: str) -> list[str]:
    """The programs of a shell block's `python -c "..."` lines (they make the files its
    commands read, such as a test image)."""
    programs = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["python", "-c"]:
            programs.append(words[2])
    return programs


PYTHON_LINES = [(start, program) for start, code in of("bash", "sh")
                for program in python_lines(code)]


@pytest.mark.parametrize("start,program", PYTHON_LINES, ids=block_id)
def test_shell_block_python_line_runs(start, program, tmp_path, data_cache):
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=block_env(data_cache),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"README.md:{start}: `python -c` failed:\n{done.stderr[-3000:]}"


def test_command_line_rule():
    code = ("cnnkit train --model x \\\n    --epochs 1   # a comment\n"
            "torchrun --nproc-per-node 4 -m cnnkit train --recipe fast\nmake demo\n")
    assert cnnkit_commands(code) == [["train", "--model", "x", "--epochs", "1"],
                                     ["train", "--recipe", "fast"]]


def test_every_block_is_covered():
    # A block in a language this file does not know would silently go untested.
    known = {"python", "yaml", "toml", "bash", "sh", ""}
    assert {lang for lang, _, _ in BLOCKS} <= known
    assert SHELL and PYTHON_LINES and of("python") and of("yaml")
