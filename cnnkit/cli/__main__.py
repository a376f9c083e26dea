"""`python -m cnnkit.cli ...`: the `cnnkit` command."""
import sys

from cnnkit.cli import main

sys.exit(main())
