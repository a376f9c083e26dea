"""`python -m cnnkit ...` (and `torchrun -m cnnkit ...`): the `cnnkit` command."""
from cnnkit.cli import entry

entry()
