"""``python -m evo.report``."""

import sys

from evo.report.cli import main

sys.exit(main())
