"""Validate documents offline, as a worker would (docs/clients.md). No broker, no database.

    python validate_order.py order.json [more.json ...]
    # the same from the shell:  conveyor validate order.json  (--type order.cancelled, --json)

Prints "ok" or the reason a worker would write in the dead letter's x-conveyor-error-message
header, per file; exits 1 when any was refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conveyor.workers.kit.contract import check


def main(paths: list[str], *, message_type: str = "order.created") -> int:
    refused = 0
    for path in paths:
        verdict = check(message_type, Path(path).read_bytes())
        print(f"{path}: {'ok' if verdict.accepted else verdict.reason}")
        refused += not verdict.accepted
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
