"""`python -m cnnkit.cli ...`: the `cnnkit` command."""
from cnnkit.cli import entry

entry()
