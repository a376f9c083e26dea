"""The one error type a user can cause.

A `CnnkitError` carries one line that names the bad value and what would be valid. The CLI
prints it without a traceback and exits 2; internal bugs raise anything else and keep theirs.

Errors about one option say so in the library's words (`val_split=1.5 is out of range; valid:
0 <= val_split < 1`) and carry the option's name, so the command line can restate them in its
own (`--val-split 1.5 is out of range; ...`) without knowing how each message was built.
"""
from __future__ import annotations

import math
import reprlib

MAX_SHOWN = 200  # characters of a user's value that an error message repeats


class CnnkitError(ValueError):
    """A mistake in what the user asked for (bad option, bad file, unknown name)."""

    def __init__(self, message: str, option: str | None = None, value=None):
        super().__init__(message)
        self.option, self.value = option, value

    def restated(self, flag: str) -> "CnnkitError":
        """The same error with the option written as a command-line flag (`--val-split 1.5`)."""
        if self.option is None:
            return self
        import re

        as_typed = self.value if isinstance(self.value, str) else shown(self.value)
        text = str(self).replace(f"{self.option}={shown(self.value)}", f"{flag} {as_typed[:MAX_SHOWN]}")
        # the option named again in what is valid (`0 <= val_split < 1`), as a whole word
        text = re.sub(rf"(?<![\w-]){re.escape(self.option)}(?![\w-])", flag, text)
        return CnnkitError(text, self.option, self.value)


MAX_SHOWN = 200  # characters of a user's value echoed in a message: never megabytes


def shown(value) -> str:
    """`repr(value)`, cut to about MAX_SHOWN characters, on one line."""
    import reprlib

    if isinstance(value, int) and value.bit_length() > 300:  # repr would be long, or raise
        return f"<an integer of about {int(value.bit_length() * 0.30103):,} digits>"
    brief = reprlib.Repr()
    brief.maxstring = brief.maxother = MAX_SHOWN
    text = brief.repr(value).replace("\n", "\\n")
    return text if len(text) <= MAX_SHOWN + 40 else text[:MAX_SHOWN] + "…"


def printable(text: str) -> str:
    """A name from the file system or a file, safe to show in a terminal, a picture or a page:
    a byte that is not UTF-8 (a lone surrogate, PEP 383) as `\\xff`, a control or other
    invisible character (an ANSI escape, a newline, a right-to-left override) as its escape
    (`\\x1b`, `\\n`, `\\u202e`); everything printable, accents and CJK included, as it is.
    The one place names are made safe: class names, model names, file names in messages."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # os.fsdecode's stand-in for the byte ord - 0xDC00
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def one_of(what: str, value, valid) -> CnnkitError:
    """`unknown optimizer 'adma'; valid: adam, sgd, ...; did you mean 'adam'?` in one line
    (the closest valid name, where one is close)."""
    valid = [str(v) for v in valid]
    line = f"unknown {what} {shown(value)}; valid: {', '.join(valid)}"
    near = closest(value, valid)
    return CnnkitError(line + (f"; did you mean {near!r}?" if near else ""))


def closest(value, valid) -> str | None:
    """The valid name nearest a misspelled one (`adma` -> `adam`, `--epoch` -> `--epochs`):
    difflib's close matches (case and leading dashes aside), the fewest typing mistakes first
    (a swapped pair is one: `adma` is `adam`, not `adamax`); None when nothing is close. The
    one "did you mean" of cnnkit."""
    import difflib

    if not isinstance(value, str) or not value or len(value) > MAX_SHOWN:
        return None
    bare = {str(v).lower().lstrip("-"): str(v) for v in valid}
    typed = value.lower().lstrip("-")
    near = difflib.get_close_matches(typed, list(bare), n=3, cutoff=0.6)
    return bare[min(near, key=lambda n: _typos(typed, n))] if near else None


def _typos(a: str, b: str) -> int:
    """Edits from a to b: a letter added, dropped, changed, or two neighbours swapped."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def out_of_range(option: str, value, valid: str) -> CnnkitError:
    """`lr=-1 is out of range; valid: a number > 0`, carrying the option for the CLI."""
    return CnnkitError(f"{option}={shown(value)} is out of range; valid: {valid}", option, value)


class _Brief(reprlib.Repr):
    """repr in bounded time and length: a value read from a file can be megabytes (or an int
    whose repr raises past 4,300 digits); dicts keep their order, as in repr."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 4, MAX_SHOWN, MAX_SHOWN
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 20

    def repr_str(self, x, level):
        return repr(x) if len(x) <= MAX_SHOWN else f"{x[:MAX_SHOWN]!r}… ({len(x):,} characters)"

    def repr_int(self, x, level):
        if x.bit_length() > 600:  # ~180 digits
            return f"<an integer of about {x.bit_length() * math.log10(2):,.0f} digits>"
        return repr(x)

    def repr_dict(self, x, level):
        if level <= 0 and x:
            return "{...}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in list(x.items())[:self.maxdict]]
        return "{" + ", ".join(pieces + ["..."] * (len(x) > self.maxdict)) + "}"


def clipped(value, quote: bool = True) -> str:
    """`repr(value)` for an error message, at most about MAX_SHOWN characters; with
    `quote=False`, a text (a parser's message) as it is, cut as short, on one line."""
    if quote:
        text = _Brief().repr(value)
    else:
        text = str(value).replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= MAX_SHOWN + 40 else text[:MAX_SHOWN] + "…"
