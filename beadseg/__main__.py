"""``python -m beadseg`` = the ``beadseg`` command."""

import sys

from beadseg.cli import main

sys.exit(main())
