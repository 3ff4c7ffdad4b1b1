"""What every command module shares: exit codes, the command registry, output helpers.

Command modules import this, never the package (``conveyor.workers.cli``), so there is no
import cycle: the package only assembles the groups and dispatches.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register ``fn`` as the command ``name`` ("<group> <action>", or "<group>")."""
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def tenant_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", default=None, help="tenant id (default: CONVEYOR_DEFAULT_TENANT)")


def emit(args: argparse.Namespace, data: object, text: str) -> None:
    """Print JSON with --json, else the human text."""
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text)
