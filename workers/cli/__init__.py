# PYTHON_ARGCOMPLETE_OK
"""The ``conveyor`` command line: it assembles the command groups and dispatches.

One module per group (``db``, ``topology``, ``run``, ``stock``, ``orders``, ``reconcile``,
``health``, ``demo``, ``relay``, ``dlq``, ``privacy`` for ``gdpr`` and ``pii``, ``archive``), each
with ``add_parsers(subparsers)`` beside the functions it registers with
``@command("<group> <action>")`` (``cli/base.py``, which every group imports instead of this
package, so nothing here is imported back). Heavy imports (pika, psycopg, the demo) stay
inside the command functions, so ``--help`` and shell completion are fast.

Exit codes: 0 success, 1 the operation failed (or found a problem), 2 bad usage or
configuration, 3 a dependency (database, broker) is unreachable, 4 not found.

Shell completion (argcomplete): ``eval "$(register-python-argcomplete conveyor)"``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from conveyor.workers.cli.base import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    command,
    emit,
)

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE",
           "build_parser", "command", "emit", "main"]

# In the order `conveyor --help` lists them.
GROUPS: tuple[str, ...] = ("db", "topology", "run", "stock", "orders", "reconcile", "health", "demo",
                           "relay", "dlq", "privacy", "archive", "contracts", "backup", "catalog",
                           "money")


def _groups() -> list:
    return [importlib.import_module(f"conveyor.workers.cli.{name}") for name in GROUPS]


def build_parser() -> argparse.ArgumentParser:
    from conveyor import __version__

    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Conveyor: order-processing workers between RabbitMQ and PostgreSQL. "
                    "Configuration comes from CONVEYOR_* environment variables "
                    "(CONVEYOR_DATABASE_URL, CONVEYOR_AMQP_URL, ...; see README).",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage/configuration, 3 dependency unreachable, 4 not found.",
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _groups():
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _autocomplete(parser)
    args = parser.parse_args(argv)

    from conveyor.workers.config import ConfigError, load_settings
    from conveyor.workers.logging import configure

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"conveyor: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure(log_format=settings.log_format, level=settings.log_level)
    args.settings = settings
    key = " ".join(filter(None, [args.command, getattr(args, f"{args.command}_command", None)]))
    from conveyor.db.errors import wrap_exceptions

    try:
        with wrap_exceptions():  # a driver error leaves as Conveyor's (conveyor.db.errors)
            return COMMANDS[key](args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - one clear line, not a traceback
        return _report(error)


def _autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (and exit) when argcomplete asks; else nothing."""
    try:
        import argcomplete
    except ImportError:  # completion is a convenience: the command works without it
        return
    argcomplete.autocomplete(parser)


def _report(error: Exception) -> int:
    import pika.exceptions

    from conveyor.db.errors import DatabaseError, MigrationError
    from conveyor.workers.config import ConfigError
    from conveyor.workers.logging import redact_url

    text = redact_url(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    from conveyor.db.errors import PoolerRefused, ReadUrlNotReplica

    if isinstance(error, (PoolerRefused, ReadUrlNotReplica)):  # the URLs are configuration
        print(f"conveyor: {text}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, MigrationError):
        print(f"conveyor: migration refused: {text}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(error, DatabaseError) and error.operational or isinstance(
            error, (pika.exceptions.AMQPConnectionError, ConnectionError)):
        print(f"conveyor: cannot reach a dependency: {type(error).__name__}: {text}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    from conveyor.db.crypto import PiiError

    if isinstance(error, (ValueError, ConfigError, PiiError)):  # a key file problem is configuration
        print(f"conveyor: {text}", file=sys.stderr)
        return EXIT_USAGE
    print(f"conveyor: {type(error).__name__}: {text}", file=sys.stderr)
    return EXIT_FAILED
