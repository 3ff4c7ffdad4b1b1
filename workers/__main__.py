"""``python -m workers``: the same as the ``conveyor`` command."""

import sys

from workers.cli import main

sys.exit(main())
