"""``python -m edge_ser.daemon listen|devices``: the daemon without the main CLI."""

import sys

from .cli import main

sys.exit(main())
