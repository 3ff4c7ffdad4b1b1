"""The ``conveyor`` command line: argument parsing and output only; the work is elsewhere.

Exit codes: 0 success, 1 the operation failed (or found a problem), 2 bad usage or
configuration, 3 a dependency (database, broker) is unreachable, 4 not found.

A command group living elsewhere is listed in ``EXTENSIONS``: its module has
``add_parsers(subparsers)`` (a group parser whose actions use ``dest="<group>_command"``)
and registers its functions with ``@command("<group> <action>")``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from uuid import UUID

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
EXTENSIONS: tuple[str, ...] = ("conveyor.workers.cli.relay", "conveyor.workers.cli.dlq")


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Conveyor: order-processing workers between RabbitMQ and PostgreSQL. "
                    "Configuration comes from CONVEYOR_* environment variables "
                    "(CONVEYOR_DATABASE_URL, CONVEYOR_AMQP_URL, ...; see README).",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage/configuration, 3 dependency unreachable, 4 not found.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema: migrate, status, partitions")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_sub.add_parser("migrate", help="apply pending migrations (refuses if an applied file was edited)")
    _json_flag(p)
    p = db_sub.add_parser("status", help="list applied and pending migrations")
    _json_flag(p)
    p = db_sub.add_parser("partitions", help="create monthly order partitions ahead of time")
    p.add_argument("--months", type=int, default=3, help="months ahead of the current one (default 3)")
    _json_flag(p)

    topo = sub.add_parser("topology", help="RabbitMQ exchanges and queues")
    topo_sub = topo.add_subparsers(dest="topology_command", required=True, metavar="ACTION")
    topo_sub.add_parser("declare", help="declare every exchange and queue (idempotent)")

    from conveyor.workers.bootstrap import ALL
    p = sub.add_parser("run", help="run workers until SIGTERM/SIGINT",
                       description=f"Run workers in this process (default: all of {', '.join(ALL)}).")
    p.add_argument("workers", nargs="*", metavar="WORKER", help=f"one or more of: {', '.join(ALL)}")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="run N competing copies as child processes (default 1); use about one per core")

    stock = sub.add_parser("stock", help="inspect or set stock levels")
    stock_sub = stock.add_subparsers(dest="stock_command", required=True, metavar="ACTION")
    p = stock_sub.add_parser("set", help="set on-hand quantity (creates the SKU if new)")
    p.add_argument("sku")
    p.add_argument("quantity", type=int)
    _tenant_flag(p)
    _json_flag(p)
    p = stock_sub.add_parser("show", help="show on hand, reserved and available")
    p.add_argument("sku")
    _tenant_flag(p)
    _json_flag(p)

    order = sub.add_parser("order", help="inspect orders")
    order_sub = order.add_subparsers(dest="order_command", required=True, metavar="ACTION")
    p = order_sub.add_parser("show", help="an order with its lines and reservations")
    p.add_argument("order_id", type=UUID)
    _json_flag(p)

    p = sub.add_parser("reconcile", help="check stock against reservations, the ledger and order states",
                       description="Exit 0 when there is no drift, 1 when there is (listed).")
    p.add_argument("--limit", type=int, default=100, help="rows to list per check (default 100)")
    _json_flag(p)

    p = sub.add_parser("health", help="exit 0 when the database and/or broker answer")
    p.add_argument("--database", action="store_true", help="check the database")
    p.add_argument("--broker", action="store_true", help="check the broker")
    _json_flag(p)

    from conveyor.workers.demo import add_arguments as add_demo_arguments
    p = sub.add_parser("demo", help="seed a catalogue, run the workers, simulate a shop, print a summary",
                       description="Runs the whole system against the configured (or discovered) "
                                   "PostgreSQL and RabbitMQ and prints what happened.")
    add_demo_arguments(p)
    for module in EXTENSIONS:
        importlib.import_module(module).add_parsers(sub)
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _tenant_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", default=None, help="tenant id (default: CONVEYOR_DEFAULT_TENANT)")


def main(argv: list[str] | None = None) -> int:
    from conveyor.workers.config import ConfigError, load_settings
    from conveyor.workers.logging import configure

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"conveyor: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure(log_format=settings.log_format, level=settings.log_level)
    args.settings = settings
    from conveyor.workers.cli import commands  # noqa: F401 - registers the command functions
    for module in EXTENSIONS:
        importlib.import_module(module)
    key = " ".join(filter(None, [args.command, getattr(args, f"{args.command}_command", None)]))
    from conveyor.db.errors import wrap_exceptions

    try:
        with wrap_exceptions():  # a driver error leaves as Conveyor's (conveyor.db.errors)
            return COMMANDS[key](args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - one clear line, not a traceback
        return _report(error)


def _report(error: Exception) -> int:
    import pika.exceptions

    from conveyor.db.errors import DatabaseError, MigrationError
    from conveyor.workers.logging import redact_url

    text = redact_url(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    if isinstance(error, MigrationError):
        print(f"conveyor: migration refused: {text}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(error, DatabaseError) and error.operational or isinstance(
            error, (pika.exceptions.AMQPConnectionError, ConnectionError)):
        print(f"conveyor: cannot reach a dependency: {type(error).__name__}: {text}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if isinstance(error, ValueError):
        print(f"conveyor: {text}", file=sys.stderr)
        return EXIT_USAGE
    print(f"conveyor: {type(error).__name__}: {text}", file=sys.stderr)
    return EXIT_FAILED


def emit(args: argparse.Namespace, data: object, text: str) -> None:
    """Print JSON with --json, else the human text."""
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text)

