"""``conveyor db migrate|status|checksum|partitions|maintain|docs|locks``: the database schema, its
content checksums, its upkeep (docs/data-lifecycle.md), its documentation (docs/database.md) and
its locks."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, command, emit, json_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database schema: migrate, status, checksum, partitions, maintain, docs, locks")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db_sub.add_parser(
        "migrate", help="apply pending migrations (refuses if an applied file was edited); --dry-run on a copy",
        description="Applies the pending files of db/migrations in version order, each under a lock_timeout "
                    "(CONVEYOR_MIGRATION_LOCK_TIMEOUT_MS) retried with backoff (CONVEYOR_MIGRATION_LOCK_ATTEMPTS), "
                    "so a long transaction makes the migration wait, never the workers. Files marked "
                    "`-- conveyor:no-transaction` run statement by statement and resume where an interrupted run "
                    "stopped; contract steps (`-- conveyor:contract`) wait for --contract. With --dry-run, the "
                    "pending files are applied to a copy of the database (dropped afterwards) and each one's time "
                    "and locks are reported; the database itself is only read. Exit 0 done, 1 refused (an applied "
                    "file was edited, the locks could not be taken, the copy failed), 3 database unreachable.")
    p.add_argument("--contract", action="store_true",
                   help="also apply contract steps: only once every worker runs the code of this release")
    p.add_argument("--dry-run", action="store_true", help="apply to a copy of the database and report; change nothing")
    p.add_argument("--copy", choices=("template", "dump"), default="template",
                   help="how --dry-run copies the database: template (fast; needs no other session connected) "
                        "or dump (pg_dump snapshot; works while workers run)")
    json_flag(p)
    p = db_sub.add_parser("status", help="list applied and pending migrations",
                          description="Exit 0 when every migration is applied as written; 1 when any is pending or "
                                      "was edited after it was applied (workers wait for such a database).")
    json_flag(p)
    p = db_sub.add_parser("partitions", help="create partitions ahead of time (the maintenance loop does it too)")
    p.add_argument("--months", type=int, default=None,
                   help="monthly partitions ahead of this month (default CONVEYOR_PARTITIONS_AHEAD)")
    p.add_argument("--days", type=int, default=None,
                   help="days ahead the weekly inbox partitions cover (default CONVEYOR_PARTITIONS_AHEAD_DAYS)")
    json_flag(p)
    p = db_sub.add_parser("maintain", help="run one maintenance pass now: partitions, retention, summaries",
                          description="What every `conveyor run` group does each CONVEYOR_MAINTENANCE_INTERVAL "
                                      "(docs/data-lifecycle.md), now, with the CONVEYOR_*_RETENTION settings. "
                                      "Exit 0 done, 1 when a default partition still holds rows afterwards.")
    json_flag(p)
    p = db_sub.add_parser(
        "docs", help="the database described from its catalog (docs/database.md)",
        description="Markdown from the catalog (conveyor.db.catalog): schemas and their objects, dependencies, "
                    "privileges and row-level security. Printed, or written to --output FILE; with --check FILE, "
                    "exit 0 when FILE says the same and 1 with a diff when it does not.")
    docs_target = p.add_mutually_exclusive_group()
    docs_target.add_argument("--output", metavar="FILE", help="write the Markdown to FILE instead of printing it")
    docs_target.add_argument("--check", metavar="FILE", help="compare FILE with the database (exit 1 on a difference)")
    p = db_sub.add_parser(
        "locks", help="blocking chains, long and idle-in-transaction sessions, deadlocks",
        description="Who waits for whom (pg_blocking_pids), with each waiter's lock and query (cut to 200 "
                    "characters); transactions older than --older-than; sessions idle in a transaction; the "
                    "deadlock count since the last statistics reset. Exit 0 when no session waits for a lock, "
                    "1 when there is at least one blocking chain (alert on it), 3 when the database is "
                    "unreachable.")
    p.add_argument("--older-than", type=float, default=60.0, metavar="SECONDS",
                   help="a transaction open longer than this is long (default 60)")
    json_flag(p)
    p = db_sub.add_parser(
        "checksum", help="row count and an order-independent content hash per table",
        description="For each TABLE (default: every table of Conveyor's schemas; a partitioned table counts "
                    "as its parent, partitions included) the row count and a hash of its rows that does not "
                    "depend on their physical order, NULL-safe (conveyor.db.checksum). All tables are read in "
                    "one snapshot. --json prints only {\"tables\": {name: {\"rows\", \"hash\"}}}, so two "
                    "outputs over the same data compare equal as they are (the restore drill does). "
                    "Exit 0, 4 when a TABLE does not exist, 3 when the database is unreachable.")
    p.add_argument("tables", nargs="*", metavar="TABLE", help="schema.table, or a name on the search path")
    json_flag(p)


@command("db checksum")
def db_checksum(args: argparse.Namespace) -> int:
    import sys
    import time

    from conveyor.db.checksum import UnknownTable, table_checksums
    from conveyor.db.connection import connect

    started = time.monotonic()
    with connect(args.settings.database_url, application_name="conveyor-db-checksum",
                 statement_timeout_ms=max(args.settings.statement_timeout_ms, 3_600_000)) as conn:
        try:
            sums = table_checksums(conn, args.tables or None)
        except UnknownTable as error:
            print(f"conveyor: {error}", file=sys.stderr)
            return EXIT_NOT_FOUND
    data = {"tables": {name: {"rows": rows, "hash": digest} for name, (rows, digest) in sums.items()}}
    width = max((len(name) for name in sums), default=5)
    lines = [f"{name:<{width}}  {rows:>12,}  {digest}" for name, (rows, digest) in sums.items()]
    lines.append(f"{len(sums)} table(s), {sum(r for r, _ in sums.values()):,} rows in "
                 f"{time.monotonic() - started:.2f} s")
    emit(args, data, "\n".join(lines))
    return EXIT_OK


@command("db migrate")
def db_migrate(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import LockPolicy, apply_pending, dry_run, ensure_partitions

    settings = args.settings
    policy = LockPolicy(timeout_ms=settings.migration_lock_timeout_ms, attempts=settings.migration_lock_attempts)
    if args.dry_run:
        result = dry_run(settings.database_url, contract=args.contract, policy=policy, copy=args.copy)
        data = {"dry_run": True, "copy": result.copy, "pending": result.pending, "held": result.held,
                "files": [f.as_dict() for f in result.files], "total_ms": result.total_ms}
        emit(args, data, _render_dry_run(data))
        return EXIT_OK
    run = apply_pending(settings.database_url, contract=args.contract, policy=policy)
    partitions = ensure_partitions(settings.database_url)
    lines = [_applied_line(f.as_dict()) for f in run.applied] or ["database is up to date"]
    lines += [f"held {name} (a contract step: conveyor db migrate --contract once every worker runs "
              "this release)" for name in run.held]
    emit(args, {"applied": [f.filename for f in run.applied], "files": [f.as_dict() for f in run.applied],
                "held": run.held, "partitions_created": partitions}, "\n".join(lines))
    return EXIT_OK


def _applied_line(f: dict) -> str:
    extra = [f"{f['lock_retries']} lock retr{'y' if f['lock_retries'] == 1 else 'ies'}"] if f["lock_retries"] else []
    if not f["transactional"]:
        resumed = f", resumed at {f['resumed_at_step']}" if f["resumed_at_step"] else ""
        extra.append(f"{f['steps']} statements{resumed}")
    return f"applied {f['filename']} in {f['execution_ms']} ms" + (f" ({', '.join(extra)})" if extra else "")


def _render_dry_run(data: dict) -> str:
    if not data["pending"]:
        return "dry run: nothing to apply" + "".join(f"\nheld {name}" for name in data["held"])
    lines = [f"dry run on a {data['copy']} copy: {len(data['pending'])} file(s) would be applied"]
    for f in data["files"]:
        lines.append("  " + _applied_line(f).removeprefix("applied "))
        for lock in f["locks"] or [{"relation": "(no existing relation)", "mode": "-", "blocks": "nothing"}]:
            lines.append(f"      {lock['mode']:<26} {lock['relation']}  blocks {lock['blocks']}")
    lines += [f"held {name}" for name in data["held"]]
    lines.append(f"total {data['total_ms']} ms (copy included); the database itself was not changed")
    return "\n".join(lines)


@command("db status")
def db_status(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import status

    states = status(args.settings.database_url)
    rows = [{"version": s.migration.version, "file": s.migration.filename, "status": s.status,
             "phase": s.migration.phase, "transactional": s.migration.transactional,
             "purpose": s.migration.purpose, "applied_at": s.applied_at,
             **{key: s.audit.get(key) for key in ("applied_by", "client_host", "conveyor_version",
                                                  "execution_ms", "lock_retries")},
             **({"steps_done": s.steps_done, "steps_total": len(s.migration.statements())}
                if not s.migration.transactional else {})} for s in states]
    text = "\n".join(f"{r['version']:>4}  {r['status']:<8}  {r['file']}  {r['applied_at'] or ''}"
                     f"{'  by ' + str(r['applied_by']) if r['applied_by'] else ''}" for r in rows) or "no migrations"
    emit(args, rows, text)
    return EXIT_FAILED if any(s.status in ("modified", "pending", "partial") for s in states) else EXIT_OK


@command("db partitions")
def db_partitions(args: argparse.Namespace) -> int:
    from conveyor.db.migrate import ensure_partitions

    settings = args.settings
    created = ensure_partitions(settings.database_url, months_ahead=args.months or settings.partitions_ahead,
                                days_ahead=args.days or settings.partitions_ahead_days)
    emit(args, {"created": created}, "\n".join(f"created {p}" for p in created) or "partitions exist")
    return EXIT_OK


@command("db maintain")
def db_maintain(args: argparse.Namespace) -> int:
    from conveyor.db.connection import connect
    from conveyor.db.maintenance import run_pass
    from conveyor.workers.services.maintenance import plan_for

    with connect(args.settings.database_url, application_name="conveyor-maintain",
                 statement_timeout_ms=max(args.settings.statement_timeout_ms, 300_000)) as conn:
        report = run_pass(conn, plan_for(args.settings))
    data = report.as_dict()
    lines = [f"created {name}" for name in report.created]
    lines += [f"dropped {d['partition']} (~{d['rows']} rows)" for d in report.dropped]
    lines += [f"removed {n} rows from {table}" for table, n in report.removed.items() if n]
    lines += [f"summaries: {report.summaries} rows refreshed", f"took {report.seconds:.2f} s"]
    lines += [f"WARNING: {table}'s default partition holds {n} rows" for table, n in report.default_rows.items() if n]
    emit(args, data, "\n".join(lines))
    return EXIT_FAILED if any(report.default_rows.values()) else EXIT_OK


@command("db docs")
def db_docs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from conveyor.db.catalog import describe, render_markdown
    from conveyor.db.connection import connect

    with connect(args.settings.database_url, application_name="conveyor-db-docs") as conn:
        text = render_markdown(describe(conn))
    if args.check:
        return _check_docs(args.check, text)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return EXIT_OK


def _check_docs(file: str, expected: str) -> int:
    """0 when ``file`` holds ``expected``; else 1, a summary and the unified diff (file -> database)."""
    import difflib
    from pathlib import Path

    path = Path(file)
    found = path.read_text() if path.exists() else ""
    if found == expected:
        print(f"{path} is up to date")
        return EXIT_OK
    diff = list(difflib.unified_diff(found.splitlines(), expected.splitlines(), str(path), "database", lineterm=""))
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    print(f"{path} differs from the database: {added} line(s) to add, {removed} to remove; regenerate it "
          f"(conveyor db docs --output {path}, or make docs-db)")
    print("\n".join(diff))
    return EXIT_FAILED


@command("db locks")
def db_locks(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from conveyor.db import activity
    from conveyor.db.connection import connect

    with connect(args.settings.database_url, application_name="conveyor-db-locks") as conn:
        links = activity.chains(activity.blocking_sessions(conn))
        long = activity.long_transactions(conn, older_than_s=args.older_than)
        idle = activity.idle_in_transaction(conn)
        deadlocks = activity.deadlocks(conn)
    data = {"blocking": [{**_locks_row(asdict(link.session)), "depth": link.depth, "waits_for": link.waits_for}
                         for link in links],
            "long_transactions": [_locks_row(asdict(t)) for t in long],
            "idle_in_transaction": [_locks_row(asdict(t)) for t in idle],
            "deadlocks": {"count": deadlocks.count,
                          "since": deadlocks.since.isoformat() if deadlocks.since else None}}
    emit(args, data, _render_locks(data, older_than=args.older_than))
    return EXIT_FAILED if links else EXIT_OK


def _locks_row(shown: dict) -> dict:
    """A session as JSON: seconds to the millisecond, and no password of a URL in its query."""
    from conveyor.workers.logging import redact_url

    shown.update({k: round(v, 3) for k, v in shown.items() if isinstance(v, float)})
    shown["query"] = redact_url(shown["query"]) if shown["query"] else shown["query"]
    if "blocked_by" in shown:
        shown["blocked_by"] = list(shown["blocked_by"])
    return shown


def _render_locks(data: dict, *, older_than: float) -> str:
    def seconds(value: float | None) -> str:
        return "?" if value is None else f"{value:.1f} s"

    def who(s: dict) -> str:
        if s["pid"] == 0:
            return "pid 0  (a prepared transaction: see pg_prepared_xacts)"
        return f"pid {s['pid']}  {s['usename'] or '?'} / {s['application_name'] or '-'}  {s['state'] or '?'}"

    def waits(s: dict) -> str:
        if not s["blocked_by"]:
            return ""
        table = f" ({s['relation']})" if s["relation"] and s["relation"] not in (s["lock_target"] or "") else ""
        return (f"  waits {seconds(s['waited_s'])} for {s['lock_mode']} on {s['lock_target']}{table}"
                f" behind {', '.join(map(str, s['blocked_by']))}")

    def query(s: dict, indent: str) -> list[str]:
        return [f"{indent}    {s['query']}"] if s.get("query") else []

    waiting = {s["pid"] for s in data["blocking"] if s["blocked_by"]}
    heads = sum(1 for s in data["blocking"] if s["depth"] == 0)
    lines = [f"blocking: {len(waiting)} session(s) waiting in {heads} chain(s)" if waiting else "blocking: none"]
    for s in data["blocking"]:
        indent = "  " + "   " * max(s["depth"] - 1, 0) + ("└─ " if s["depth"] else "")
        event = f" ({s['wait_event_type']}/{s['wait_event']})" if s["wait_event_type"] else ""
        lines.append(f"{indent}{who(s)}{event}{waits(s)}  xact {seconds(s['xact_age_s'])}")
        lines += query(s, " " * len(indent))
    for title, rows in ((f"long transactions (older than {older_than:g} s)", data["long_transactions"]),
                        ("idle in transaction", data["idle_in_transaction"])):
        lines.append(f"{title}: {len(rows) or 'none'}")
        for s in rows:
            lines.append(f"  {who(s)} for {seconds(s['state_age_s'])}  xact {seconds(s['xact_age_s'])}")
            lines += query(s, "  ")
    since = data["deadlocks"]["since"] or "the statistics were never reset"
    lines.append(f"deadlocks: {data['deadlocks']['count']} since {since}")
    return "\n".join(lines)
