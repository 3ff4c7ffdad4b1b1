"""``conveyor archive run|list|restore``: cold months out of the hot tables and back.

The work is ``conveyor.db.archive``; this module picks the months, prints progress on stderr
(``archive 2026-01: orders.orders 12,000/40,000 rows``, per table and at least every 2 s)
and the outcome on stdout. See docs/data-lifecycle.md, "Cold data".

Exit codes: 0 ok (blocked months are reported, not failures, unless ``--month`` asked for
one); 1 a month failed (rolled back, files kept for a rerun), was blocked or too recent for
``--month``, its files are missing or damaged, or another archive command is running;
2 MONTH is not YYYY-MM; 3 the database is unreachable; 4 not found (restore: the month is
not archived; run --month: no such month in the hot tables).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, command, emit, json_flag

if TYPE_CHECKING:
    from conveyor.db.archive import MonthStatus
    from conveyor.db.connection import Connection

PROGRESS_INTERVAL_S = 2.0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    archive = sub.add_parser(
        "archive", help="cold months: export to files with checksums and drop; list; restore",
        description="A month is the orders Conveyor recorded in it, with their lines, reservations, payments, "
                    "shipments, transitions and personal data. It may go when its partition ended "
                    "CONVEYOR_HOT_MONTHS months before this month began and every order in it is finished "
                    "(REJECTED, DELIVERED, CANCELLED, EXPIRED). Files go under CONVEYOR_ARCHIVE_DIR/YYYY-MM.",
        epilog="Exit codes: 0 ok, 1 failed or blocked (--month), 2 usage, 3 database unreachable, 4 not found. "
               "See docs/data-lifecycle.md.")
    actions = archive.add_subparsers(dest="archive_command", required=True, metavar="ACTION")
    p = actions.add_parser("run", help="archive every archivable month, oldest first (or just --month)",
                           description="Blocked months (unfinished orders) are reported with their counts per "
                                       "status and skipped. A failure rolls the month back and keeps its files.")
    p.add_argument("--month", metavar="YYYY-MM", help="only this month")
    p.add_argument("--dry-run", action="store_true", help="say which months would go, with rows per table")
    json_flag(p)
    p = actions.add_parser("list", help="archived months, and the hot ones: orders, archivable or blocked")
    json_flag(p)
    p = actions.add_parser("restore", help="load an archived month back into the hot tables",
                           description="Verifies every file's sha256 first (nothing is restored otherwise), "
                                       "loads them in one transaction, checks the rows' checksums against the "
                                       "manifest and re-applies privacy erasures made since the archive.")
    p.add_argument("month", metavar="MONTH", help="YYYY-MM")
    p.add_argument("--from", dest="source", metavar="DIR", help="the month's directory (default: where it was "
                                                                    "archived, archive.months.location)")
    p.add_argument("--dry-run", action="store_true", help="verify the files and say what would be restored")
    json_flag(p)


# -- run ----------------------------------------------------------------------------------------

@command("archive run")
def archive_run(args: argparse.Namespace) -> int:
    from conveyor.db import archive
    from conveyor.db.connection import connect

    month = _month(args.month) if args.month else None
    if args.month and month is None:
        return EXIT_USAGE
    with connect(args.settings.database_url, application_name="conveyor-archive", statement_timeout_ms=0) as conn:
        if not args.dry_run and not archive.try_lock(conn):
            return _refuse(args, EXIT_FAILED, "busy", "another conveyor archive run or restore is running")
        statuses = archive.hot_months(conn, hot=args.settings.hot_months)
        chosen = [s for s in statuses if s.month == month] if month else [s for s in statuses if s.old_enough]
        if month and not chosen:
            return _no_hot_month(args, conn, month)
        archived = {row["month"] for row in archive.catalogue(conn) if row["state"] == "archived"}
        results = [_run_month(args, conn, s, archived) for s in chosen]
    nothing = f"nothing to archive (CONVEYOR_HOT_MONTHS={args.settings.hot_months})"
    emit(args, {"dry_run": args.dry_run, "hot_months": args.settings.hot_months, "months": results},
         "\n".join(r["line"] for r in results) or nothing)
    refused = {"failed", "conflict"} | ({"blocked", "recent"} if month else set())
    return EXIT_FAILED if any(r["outcome"] in refused for r in results) else EXIT_OK


def _run_month(args: argparse.Namespace, conn: Connection, status: MonthStatus, archived: set[date]) -> dict:
    from conveyor.db import archive

    name = archive.label(status.month)
    if status.month in archived:  # a partition came back for a month whose files are the truth
        return _result(name, "conflict", f"conflict {name}: archive.months says archived, yet an orders "
                                         f"partition exists; its files are left alone")
    if not status.old_enough:
        return _result(name, "recent", f"recent {name}: younger than CONVEYOR_HOT_MONTHS="
                                       f"{args.settings.hot_months}; not archived")
    if status.unfinished:
        counts = ", ".join(f"{s} {n:,}" for s, n in status.unfinished.items())
        total = sum(status.unfinished.values())
        return _result(name, "blocked", f"blocked {name}: {total:,} unfinished order(s) ({counts}); "
                                        f"nothing of it archived", unfinished=status.unfinished)
    if args.dry_run:
        rows = archive.table_counts(conn, status.month)
        return _result(name, "would archive", f"would archive {name}: {_rows(rows)} (dry run: nothing changed)",
                       rows=rows)
    return _archive_month(args, conn, status)


def _archive_month(args: argparse.Namespace, conn: Connection, status: MonthStatus) -> dict:
    from conveyor.db import archive
    from conveyor.db.errors import DatabaseError, is_outage
    from conveyor.workers.dlq.audit import current_operator

    month, name = status.month, archive.label(status.month)
    root, operator = Path(args.settings.archive_dir), current_operator()
    started = time.monotonic()
    try:
        location, manifest = archive.export_month(conn, month, root, operator=operator,
                                                  progress=Progress("archive", name))
    except (archive.ArchiveError, DatabaseError, OSError) as error:
        if isinstance(error, DatabaseError) and is_outage(error):
            raise
        return _result(name, "failed", f"failed {name}: export: {_line(error)}; nothing changed")
    try:
        location = location.resolve()
        archive.commit_archive(conn, month, manifest, location=location, operator=operator,
                               partition=status.partition, progress=Progress("archive", name))
    except (archive.ArchiveError, DatabaseError) as error:
        if isinstance(error, DatabaseError) and is_outage(error):
            raise
        return _result(name, "failed", f"failed {name}: {_line(error)}; rolled back, nothing removed; files kept "
                                       f"in {location} (a rerun overwrites them)", location=str(location))
    rows = {f["table"]: f["rows"] for f in manifest["files"]}
    return _result(name, "archived", f"archived {name}: {_rows(rows)} -> {location}", rows=rows,
                   location=str(location), seconds=round(time.monotonic() - started, 3))


def _no_hot_month(args: argparse.Namespace, conn: Connection, month: date) -> int:
    from conveyor.db import archive

    name = archive.label(month)
    rows = archive.catalogue(conn, month)
    if rows and rows[0]["state"] == "archived":
        emit(args, {"dry_run": args.dry_run, "months": [_result(name, "archived already", "")]},
             f"{name} is archived already ({rows[0]['location']})")
        return EXIT_OK
    return _refuse(args, EXIT_NOT_FOUND, "not_found", f"no orders partition for {name} in the hot tables")


# -- list -----------------------------------------------------------------------------------------

@command("archive list")
def archive_list(args: argparse.Namespace) -> int:
    from conveyor.db import archive
    from conveyor.db.connection import connect

    with connect(args.settings.database_url, application_name="conveyor-archive") as conn:
        catalogue = [_catalogued(row) for row in archive.catalogue(conn)]
        hot = [{"month": archive.label(s.month), "orders": s.orders, "by_status": s.by_status,
                "unfinished": s.unfinished, "verdict": s.verdict}
               for s in archive.hot_months(conn, hot=args.settings.hot_months)]
    data = {"hot_months": args.settings.hot_months, "archive": catalogue, "hot": hot}
    emit(args, data, _render_list(data))
    return EXIT_OK


def _catalogued(row: dict) -> dict:
    rows = {f["table"]: f["rows"] for f in row["manifest"]["files"]}
    return {"month": row["month"].strftime("%Y-%m"), "state": row["state"], "location": row["location"],
            "rows": rows, "total_rows": sum(rows.values()), "archived_at": row["archived_at"],
            "restored_at": row["restored_at"], "operator": row["operator"]}


def _render_list(data: dict) -> str:
    lines = ["archived months (archive.months):" if data["archive"] else "archived months: none"]
    for row in data["archive"]:
        restored = f"restored {row['restored_at']:%Y-%m-%d %H:%M}" if row["restored_at"] else ""
        lines.append(f"  {row['month']}  {row['state']:<8}  {row['total_rows']:>10,} rows  "
                     f"archived {row['archived_at']:%Y-%m-%d %H:%M} by {row['operator']}  {restored}".rstrip()
                     + f"\n    {row['location']}: {_rows(row['rows'])}")
    lines.append(f"hot months (CONVEYOR_HOT_MONTHS={data['hot_months']}):" if data["hot"] else "hot months: none")
    for month in data["hot"]:
        why = ", ".join(f"{s} {n:,}" for s, n in month["unfinished"].items())
        verdict = f"blocked ({why})" if month["verdict"] == "blocked" else month["verdict"]
        lines.append(f"  {month['month']}  {month['orders']:>10,} orders  {verdict}")
    return "\n".join(lines)


# -- restore ------------------------------------------------------------------------------------

@command("archive restore")
def archive_restore(args: argparse.Namespace) -> int:
    from conveyor.db import archive
    from conveyor.db.connection import connect

    month = _month(args.month)
    if month is None:
        return EXIT_USAGE
    name = archive.label(month)
    with connect(args.settings.database_url, application_name="conveyor-archive", statement_timeout_ms=0) as conn:
        rows = archive.catalogue(conn, month)
        if not rows or rows[0]["state"] != "archived":
            why = f"restored at {rows[0]['restored_at']}" if rows else "archive.months has no row for it"
            return _refuse(args, EXIT_NOT_FOUND, "not_found", f"{name} is not archived ({why})")
        directory = Path(args.source or rows[0]["location"])
        try:
            manifest = archive.read_manifest(directory, rows[0]["manifest"])
        except (archive.ArchiveError, OSError, ValueError) as error:
            return _refuse(args, EXIT_FAILED, "files", f"restore {name}: {_line(error)}; nothing restored")
        counts = {f["table"]: f["rows"] for f in manifest["files"]}
        if args.dry_run:
            emit(args, {"month": name, "outcome": "would restore", "rows": counts, "location": str(directory)},
                 f"would restore {name} from {directory}: {_rows(counts)} (files verified; dry run: nothing changed)")
            return EXIT_OK
        return _restore(args, conn, month, directory, manifest)


def _restore(args: argparse.Namespace, conn: Connection, month: date, directory: Path, manifest: dict) -> int:
    from conveyor.db import archive
    from conveyor.db.errors import DatabaseError, is_outage
    from conveyor.workers.dlq.audit import current_operator

    name = archive.label(month)
    if not archive.try_lock(conn):
        return _refuse(args, EXIT_FAILED, "busy", "another conveyor archive run or restore is running")
    try:
        erased = archive.restore_month(conn, month, directory, manifest, operator=current_operator(),
                                       progress=Progress("restore", name))
    except (archive.ArchiveError, DatabaseError, OSError, EOFError) as error:  # EOFError: a truncated gzip
        if isinstance(error, DatabaseError) and is_outage(error):
            raise
        return _refuse(args, EXIT_FAILED, "failed", f"restore {name}: {_line(error)}; rolled back, nothing restored")
    counts = {f["table"]: f["rows"] for f in manifest["files"]}
    erasure = (f"; erasures re-applied: {erased['personal_data_rows']} personal data row(s) deleted, "
               f"{erased['orders_pseudonymised']} order(s) pseudonymised" if any(erased.values()) else "")
    emit(args, {"month": name, "outcome": "restored", "rows": counts, "location": str(directory), "erased": erased},
         f"restored {name} from {directory}: {_rows(counts)}{erasure}")
    return EXIT_OK


# -- shared -------------------------------------------------------------------------------------

class Progress:
    """Progress lines on stderr: each table when done, and at least every ``interval`` seconds."""

    def __init__(self, verb: str, month: str, *, interval: float = PROGRESS_INTERVAL_S) -> None:
        self._prefix, self._interval = f"{verb} {month}", interval
        self._last, self._finished = time.monotonic(), set[str]()

    def __call__(self, table: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if (finished and table in self._finished) or (not finished and now - self._last < self._interval):
            return
        if finished:
            self._finished.add(table)
        self._last = now
        print(f"{self._prefix}: {table} {done:,}/{total:,} rows", file=sys.stderr, flush=True)


def _month(text: str) -> date | None:
    """The month's first day, or None after printing the usage line."""
    from conveyor.db.archive import parse_month

    try:
        return parse_month(text)
    except ValueError as error:
        print(f"conveyor: {error}", file=sys.stderr)
        return None


def _refuse(args: argparse.Namespace, code: int, error: str, line: str) -> int:
    print(f"conveyor: {line}", file=sys.stderr)
    if getattr(args, "json", False):
        emit(args, {"error": error, "detail": line}, line)
    return code


def _result(month: str, outcome: str, line: str, **data: object) -> dict:
    return {"month": month, "outcome": outcome, **data, "line": line}


def _rows(rows: dict[str, int]) -> str:
    return f"{sum(rows.values()):,} rows (" + ", ".join(f"{t} {n:,}" for t, n in rows.items()) + ")"


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
