"""Entry point: ``python -m converter ...`` (see :mod:`converter.cli`)."""

import sys

from .cli import main

sys.exit(main())
