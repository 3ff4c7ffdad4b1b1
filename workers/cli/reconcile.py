"""``conveyor reconcile``: stock against reservations, the ledger and order states."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_OK, command, emit, json_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconcile", help="check stock against reservations, the ledger and order states",
                       description="Exit 0 when there is no drift, 1 when there is (listed).")
    p.add_argument("--limit", type=int, default=100, help="rows to list per check (default 100)")
    json_flag(p)


@command("reconcile")
def reconcile(args: argparse.Namespace) -> int:
    from conveyor.db.connection import connect_reader
    from conveyor.db.reconcile import run_checks, totals

    with connect_reader(args.settings.database_read_url, args.settings.database_url) as conn:
        drift = run_checks(conn, limit=args.limit)
        summary = totals(conn)
    drifted = {name: rows for name, rows in drift.items() if rows}
    report = {"ok": not drifted, "totals": summary, "drift": drift}
    lines = [f"{summary['skus']} SKUs, on hand {summary['on_hand']}, reserved {summary['reserved']}"]
    lines += [f"{name}: {'ok' if not rows else f'{len(rows)} drifted'}" for name, rows in drift.items()]
    lines += [f"  {name}: {row}" for name, rows in drifted.items() for row in rows[:10]]
    lines.append("no drift" if not drifted else "DRIFT FOUND")
    emit(args, report, "\n".join(lines))
    return EXIT_OK if not drifted else EXIT_FAILED

