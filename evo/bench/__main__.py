"""``python -m evo.bench SUBCOMMAND``: see :mod:`evo.bench`."""

import sys

from evo.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
