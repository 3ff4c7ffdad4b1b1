"""``conveyor db migrate|status|partitions``: the database schema."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_OK, command, emit, json_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database schema: migrate, status, partitions")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_sub.add_parser("migrate", help="apply pending migrations (refuses if an applied file was edited)")
    json_flag(p)
    p = db_sub.add_parser("status", help="list applied and pending migrations",
                          description="Exit 0 when every migration is applied as written; 1 when any is pending or "
                                      "was edited after it was applied (workers wait for such a database).")
    json_flag(p)
    p = db_sub.add_parser("partitions", help="create monthly order partitions ahead of time")
    p.add_argument("--months", type=int, default=3, help="months ahead of the current one (default 3)")
    json_flag(p)


@command("db migrate")
def db_migrate(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import ensure_partitions, migrate

    applied = migrate(args.settings.database_url)
    partitions = ensure_partitions(args.settings.database_url)
    text = "\n".join([f"applied {name}" for name in applied] or ["database is up to date"])
    emit(args, {"applied": applied, "partitions_created": partitions}, text)
    return EXIT_OK


@command("db status")
def db_status(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import status

    states = status(args.settings.database_url)
    rows = [{"version": s.migration.version, "file": s.migration.filename, "status": s.status,
             "applied_at": s.applied_at} for s in states]
    text = "\n".join(f"{r['version']:>4}  {r['status']:<8}  {r['file']}  {r['applied_at'] or ''}"
                     for r in rows) or "no migrations"
    emit(args, rows, text)
    return EXIT_FAILED if any(s.status in ("modified", "pending") for s in states) else EXIT_OK


@command("db partitions")
def db_partitions(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import ensure_partitions

    created = ensure_partitions(args.settings.database_url, months_ahead=args.months)
    emit(args, {"created": created}, "\n".join(f"created {p}" for p in created) or "partitions exist")
    return EXIT_OK

