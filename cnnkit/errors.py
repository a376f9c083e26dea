"""The one error type a user can cause.

A `CnnkitError` carries one line that names the bad value and what would be valid. The CLI
prints it without a traceback and exits 2; internal bugs raise anything else and keep theirs.
"""


class CnnkitError(ValueError):
    """A mistake in what the user asked for (bad option, bad file, unknown name)."""


def one_of(what: str, value, valid) -> CnnkitError:
    """`unknown optimizer 'adma'; valid: adam, sgd, ...` in one line."""
    return CnnkitError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")
