"""``python -m conveyor``: the same as the ``conveyor`` command."""

import sys

from conveyor.workers.cli import main

sys.exit(main())
