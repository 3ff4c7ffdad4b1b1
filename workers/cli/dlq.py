"""``conveyor dlq ...``: argument parsing and output only; the work is in the sibling modules.

Registered through ``conveyor.workers.cli.EXTENSIONS``. Exit codes as everywhere: 0 ok, 1 failed
(or found a problem: a canary stop, messages that failed again, a busy DLQ, a DLQ declared
differently or with a delivery limit), 2 usage, 3 database or broker unreachable, 4 not found
(queue, message id, group, audit run).
"""

from __future__ import annotations

import argparse
import functools
import sys
from datetime import datetime, timezone
from pathlib import Path
from uuid import UUID

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, command, emit, json_flag

PROGRESS_MIN = 100   # replays scanning fewer messages print no progress line (unless on a TTY)
# The actions that hold a DLQ's messages (a session), and so may meet a delivery limit.
SESSION_ACTIONS = ("stats", "list", "groups", "show", "replay", "purge", "export", "import")


# -- parsers ---------------------------------------------------------------------------------

def add_parsers(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser("dlq", help="inspect, group, replay, purge, export and import dead letters",
                         description="The ops console for dead-lettered messages. QUEUE is a worker "
                                     "(orders), its queue (conveyor.orders) or the DLQ itself "
                                     "(conveyor.orders.dlq). Reading never consumes or reorders a DLQ.",
                         epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 unreachable, 4 not found. "
                                "See docs/dlq.md.")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    _stats_parser(actions)
    _list_parser(actions)
    _groups_parser(actions)
    _show_parser(actions)
    _replay_parser(actions)
    _purge_parser(actions)
    _export_parser(actions)
    _import_parser(actions)
    _audit_parser(actions)
    for name in SESSION_ACTIONS:
        _accept_limit_flag(actions.choices[name])


def _stats_parser(actions) -> None:
    p = actions.add_parser("stats", help="per work queue: dead letters, oldest and newest failure")
    p.add_argument("queues", nargs="*", metavar="QUEUE", help="work queues (default: every worker's)")
    json_flag(p)


def _list_parser(actions) -> None:
    p = actions.add_parser("list", help="a table of dead letters (nothing consumed, order kept)")
    p.add_argument("queue", metavar="QUEUE")
    _filter_flags(p)
    p.add_argument("--limit", type=_positive_or_zero, default=100, help="rows to show, 0 = all (default 100)")
    json_flag(p)


def _groups_parser(actions) -> None:
    p = actions.add_parser("groups", help="dead letters grouped by fingerprint (error class + place + message)")
    p.add_argument("queue", metavar="QUEUE")
    _filter_flags(p)
    json_flag(p)


def _show_parser(actions) -> None:
    p = actions.add_parser("show", help="one dead letter: body, properties, failure, and the order now")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("message_id", metavar="MESSAGE_ID")
    json_flag(p)


def _replay_parser(actions) -> None:
    p = actions.add_parser("replay", help="publish dead letters back (confirmed, then acked), audited",
                           description="Publishes each selected message to its original exchange and "
                                       "routing key (or --to-queue) with its body and message_id "
                                       "unchanged, waits for the broker's confirm, then removes the "
                                       "DLQ copy. Recorded in the audit trail.")
    p.add_argument("queue", metavar="QUEUE")
    _target_flags(p, extra=("--all",))
    _filter_flags(p)
    p.add_argument("--dry-run", action="store_true", help="change nothing; say what would happen to each")
    p.add_argument("--rate", type=_arg(_parse_rate), default=None, metavar="N/s",
                   help="at most this many per second (20, 20/s, 30/m)")
    p.add_argument("--stop-after-failures", type=_positive, default=None, metavar="N",
                   help="canary: stop when N replayed messages are dead-lettered again")
    p.add_argument("--canary-wait", type=float, default=5.0, metavar="SECONDS",
                   help="with --stop-after-failures: how long to keep watching after the last "
                        "publish (default 5)")
    p.add_argument("--to-queue", default=None, metavar="Q",
                   help="publish to this queue (default exchange) instead of the original exchange")
    json_flag(p)


def _purge_parser(actions) -> None:
    p = actions.add_parser("purge", help="delete dead letters for good (asks first), audited")
    p.add_argument("queue", metavar="QUEUE")
    _target_flags(p, extra=("--older-than",))
    p.add_argument("--yes", action="store_true", help="do not ask")
    json_flag(p)


def _export_parser(actions) -> None:
    p = actions.add_parser("export", help="write dead letters to a JSON-lines file (nothing consumed)")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("file", type=Path, metavar="FILE")
    _filter_flags(p)
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    json_flag(p)


def _import_parser(actions) -> None:
    p = actions.add_parser("import", help="publish an export file into DLQs (copies already there are "
                                          "skipped), audited")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--queue", default=None, metavar="QUEUE",
                   help="import into this DLQ instead of the one recorded in the file")
    json_flag(p)


def _audit_parser(actions) -> None:
    p = actions.add_parser("audit", help="who replayed, purged or imported what, and how it ended")
    p.add_argument("--action", choices=("replay", "purge", "import"), default=None)
    p.add_argument("--queue", default=None, metavar="QUEUE", help="only runs on this DLQ")
    p.add_argument("--limit", type=_positive, default=50, help="runs to show (default 50)")
    p.add_argument("--run", type=UUID, default=None, metavar="RUN_ID", help="one run with its messages")
    json_flag(p)


def _accept_limit_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accept-delivery-limit", action="store_true",
                   help="look even though a delivery limit applies to the DLQ (each look counts towards it; "
                        "the command stops before a message nears it). See docs/dlq.md.")


def _target_flags(p: argparse.ArgumentParser, *, extra: tuple[str, ...]) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", dest="ids", action="extend", nargs="+", metavar="ID",
                        help="one or more message ids (repeatable)")
    target.add_argument("--group", metavar="FP", help="a fingerprint from `dlq groups` (or 6+ char prefix)")
    if "--all" in extra:
        target.add_argument("--all", dest="everything", action="store_true", help="every message (with filters)")
    if "--older-than" in extra:
        target.add_argument("--older-than", type=_arg(_parse_duration), metavar="DURATION",
                            help="failed longer ago than this (7d, 12h, 30m)")


def _filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", metavar="TEXT", help="reason, error code or message contains TEXT")
    p.add_argument("--error-class", metavar="NAME", help="e.g. InvalidMessage, TransientDatabaseError")
    p.add_argument("--since", type=_arg(_parse_time), metavar="TIME", help="failed at or after (ISO-8601 or 2h, 3d)")
    p.add_argument("--until", type=_arg(_parse_time), metavar="TIME", help="failed at or before")
    p.add_argument("--routing-key", metavar="KEY", help="original routing key, e.g. order.created")


def _arg(parse):
    @functools.wraps(parse)
    def checked(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return checked


def _parse_time(text: str) -> datetime:
    from conveyor.workers.dlq.selection import parse_time
    return parse_time(text, now=datetime.now(timezone.utc))


def _parse_duration(text: str) -> datetime:
    """--older-than 7d → the instant seven days ago."""
    from conveyor.workers.dlq.selection import parse_duration
    return datetime.now(timezone.utc) - parse_duration(text)


def _parse_rate(text: str) -> float:
    from conveyor.workers.dlq.replay import parse_rate
    return parse_rate(text)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


# -- shared helpers ----------------------------------------------------------------------------

def dlq_errors(fn):
    """The console's own failures as one line and an exit code (others go to conveyor.workers.cli)."""
    @functools.wraps(fn)
    def guarded(args: argparse.Namespace) -> int:
        from conveyor.workers.dlq.reader import ACCEPT_DELIVERY_LIMIT, DlqBusy, DlqDeliveryLimit, DlqNotFound, DlqUnsafe
        token = ACCEPT_DELIVERY_LIMIT.set(getattr(args, "accept_delivery_limit", False))
        try:
            return fn(args)
        except (DlqNotFound, FileNotFoundError) as error:
            return _fail(args, "not_found", str(error), EXIT_NOT_FOUND)
        except DlqDeliveryLimit as error:
            return _fail(args, "delivery_limit", str(error), EXIT_FAILED)
        except (DlqBusy, DlqUnsafe) as error:
            return _fail(args, "refused", str(error), EXIT_FAILED)
        except FileExistsError as error:
            return _fail(args, "exists", str(error), EXIT_USAGE)
        finally:
            ACCEPT_DELIVERY_LIMIT.reset(token)
    return guarded


def _fail(args: argparse.Namespace, kind: str, text: str, code: int) -> int:
    if getattr(args, "json", False):
        emit(args, {"error": kind, "detail": text}, "")
    print(f"conveyor: {text}", file=sys.stderr)
    return code


def _dlq(args: argparse.Namespace, name: str | None = None) -> str:
    from conveyor.workers.bootstrap import WORKERS
    from conveyor.workers.dlq.reader import resolve_dlq
    return resolve_dlq(name or args.queue, {n: spec.queue for n, spec in WORKERS.items()})


def _selection(args: argparse.Namespace):
    from conveyor.workers.dlq.selection import Selection
    return Selection(
        message_ids=frozenset(getattr(args, "ids", None) or ()), group=getattr(args, "group", None),
        everything=getattr(args, "everything", False), older_than=getattr(args, "older_than", None),
        reason=getattr(args, "reason", None), error_class=getattr(args, "error_class", None),
        since=getattr(args, "since", None), until=getattr(args, "until", None),
        routing_key=getattr(args, "routing_key", None))


def _operator() -> str:
    from conveyor.workers.dlq.audit import current_operator
    return current_operator()


# -- reading commands ----------------------------------------------------------------------------

@command("dlq stats")
@dlq_errors
def dlq_stats(args: argparse.Namespace) -> int:
    from conveyor.workers.bootstrap import WORKERS
    from conveyor.workers.dlq.render import fmt_time, jsonable, table
    from conveyor.workers.dlq.stats import queue_stats

    queues = [q.removesuffix(".dlq") for q in args.queues] or [s.queue for s in WORKERS.values()]
    rows = [queue_stats(args.settings, queue) for queue in queues]
    text = table(("QUEUE", "DLQ", "DEAD LETTERS", "OLDEST FAILURE", "NEWEST FAILURE", "STATE"),
                 [(r["queue"], r["dlq"], "-" if r["dead_letters"] is None else r["dead_letters"],
                   fmt_time(r["oldest_failure"]), fmt_time(r["newest_failure"]), r["state"]) for r in rows])
    emit(args, jsonable(rows), text)
    missing = args.queues and any(r["state"] == "not declared" for r in rows)
    if missing:
        return EXIT_NOT_FOUND
    return EXIT_FAILED if any(r["state"].startswith("refused") for r in rows) else EXIT_OK


@command("dlq list")
@dlq_errors
def dlq_list(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.reader import DlqSession
    from conveyor.workers.dlq.render import LETTER_HEADERS, letter_json, letter_row, table

    selection, dlq = _selection(args), _dlq(args)
    with DlqSession(args.settings, dlq) as session:
        matching = [h.letter for h in session.snapshot() if selection.matches(h.letter)]
        depth, limit = session.depth, session.delivery_limit
    shown = matching[:args.limit] if args.limit else matching
    text = table(LETTER_HEADERS, [letter_row(letter) for letter in shown])
    text += f"\n{len(shown)} shown, {len(matching)} matching, {depth} in {dlq}"
    emit(args, {"queue": dlq, "depth": depth, "matching": len(matching),
                "delivery_limit": limit.as_json() if limit else None,
                "letters": [letter_json(letter) for letter in shown]}, text)
    return EXIT_OK


@command("dlq groups")
@dlq_errors
def dlq_groups(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.fingerprint import group_letters
    from conveyor.workers.dlq.reader import DlqSession
    from conveyor.workers.dlq.render import GROUP_HEADERS, group_json, group_row, table

    selection, dlq = _selection(args), _dlq(args)
    with DlqSession(args.settings, dlq) as session:
        groups = group_letters(h.letter for h in session.snapshot() if selection.matches(h.letter))
    text = table(GROUP_HEADERS, [group_row(g) for g in groups])
    text += f"\n{len(groups)} group(s), {sum(g.count for g in groups)} dead letter(s) in {dlq}"
    emit(args, {"queue": dlq, "groups": [group_json(g) for g in groups]}, text)
    return EXIT_OK


@command("dlq show")
@dlq_errors
def dlq_show(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.lookup import find, what_conveyor_knows
    from conveyor.workers.dlq.views import show_json, show_text

    dlq = _dlq(args)
    found = find(args.settings, dlq, args.message_id)
    if found is None:
        emit(args, {"error": "not_found", "queue": dlq, "message_id": args.message_id},
             f"no message {args.message_id!r} in {dlq}")
        return EXIT_NOT_FOUND
    knows = what_conveyor_knows(args.settings, found.held)
    emit(args, show_json(dlq, found, knows), show_text(dlq, found, knows))
    return EXIT_OK


# -- changing commands ---------------------------------------------------------------------------

@command("dlq replay")
@dlq_errors
def dlq_replay(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.replay import ReplayOptions, dry_run, run_replay

    dlq, selection = _dlq(args), _selection(args)
    if args.to_queue == dlq:
        raise ValueError("--to-queue must not be the DLQ being replayed")
    options = ReplayOptions(to_queue=args.to_queue, rate=args.rate, canary_wait=max(0.0, args.canary_wait),
                            stop_after_failures=args.stop_after_failures)
    if args.dry_run:
        return _print_dry_run(args, dry_run(args.settings, dlq, selection, options), selection)
    report = run_replay(args.settings, dlq, selection, options, operator=_operator(),
                        progress_factory=None if args.json else _progress)
    return _print_replay(args, report, selection)


def _progress(total: int):
    from conveyor.workers.demo.progress import Progress
    return Progress("replay", total) if total >= PROGRESS_MIN or sys.stderr.isatty() else None


def _print_dry_run(args, result, selection) -> int:
    from conveyor.workers.dlq.render import jsonable, shorten, table

    rows = [(p.message_id or "(none)", p.order_id or "-", p.error_class, p.verdict, shorten(p.detail, 90))
            for p in result.plan]
    text = table(("MESSAGE ID", "ORDER ID", "ERROR CLASS", "WOULD", "DETAIL"), rows)
    counts = {v: sum(p.verdict == v for p in result.plan) for v in ("replay", "already processed", "cannot replay")}
    text += (f"\ndry run, nothing changed: {len(result.plan)} of {result.scanned} in {result.queue} selected; "
             + ", ".join(f"{n} {v}" for v, n in counts.items()))
    text += "".join(f"\nnot found: {i}" for i in result.missing_ids)
    emit(args, jsonable({"dry_run": True, "queue": result.queue, "scanned": result.scanned, "counts": counts,
                         "plan": [vars(p) for p in result.plan], "missing_ids": result.missing_ids}), text)
    return _selection_exit(len(result.plan), result.missing_ids, selection)


def _print_replay(args, report, selection) -> int:
    text = (f"replay {report.run_id} of {report.queue} by {report.operator}: scanned {report.scanned}, "
            f"matched {report.matched}, replayed {len(report.replayed)}, failed again {len(report.failed_again)}"
            f", skipped {len(report.skipped)} -> {report.outcome}")
    text += "".join(f"\n  {line}" for line in filter(None, [report.stopped, *report.skipped[:20]]))
    text += "".join(f"\n  not found: {i}" for i in report.missing_ids)
    emit(args, {"run_id": report.run_id, "queue": report.queue, "operator": report.operator,
                "scanned": report.scanned, "matched": report.matched, "replayed": report.replayed,
                "failed_again": report.failed_again, "skipped": report.skipped,
                "missing_ids": report.missing_ids, "stopped": report.stopped, "outcome": report.outcome}, text)
    if report.outcome != "ok":
        return EXIT_FAILED
    return _selection_exit(report.matched, report.missing_ids, selection)


def _selection_exit(matched: int, missing_ids: list[str], selection) -> int:
    """4 when named messages or a group matched nothing; 1 when some named ids were missing."""
    if matched == 0 and (selection.message_ids or selection.group):
        return EXIT_NOT_FOUND
    return EXIT_FAILED if missing_ids else EXIT_OK


@command("dlq purge")
@dlq_errors
def dlq_purge(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.purge import plan_purge, run_purge

    dlq, selection = _dlq(args), _selection(args)
    only_keys = None
    if not args.yes:
        plan = plan_purge(args.settings, dlq, selection)
        if not plan.letters or not _confirmed(plan):
            return _purge_declined(args, plan, selection)
        only_keys = plan.keys
    report = run_purge(args.settings, dlq, selection, operator=_operator(), only_keys=only_keys)
    text = f"purge {report.run_id} of {dlq} by {report.operator}: deleted {len(report.purged)} of {report.scanned}"
    text += "".join(f"\n  not found: {i}" for i in report.missing_ids)
    emit(args, {"run_id": report.run_id, "queue": dlq, "operator": report.operator, "scanned": report.scanned,
                "purged": report.purged, "missing_ids": report.missing_ids}, text)
    return _selection_exit(len(report.purged), report.missing_ids, selection)


def _confirmed(plan) -> bool:
    from conveyor.workers.dlq.render import GROUP_HEADERS, group_row, table

    print(table(GROUP_HEADERS, [group_row(g) for g in plan.groups]), file=sys.stderr)
    print(f"Delete these {len(plan.letters)} message(s) from {plan.queue} for good? "
          "(`conveyor dlq export` keeps a copy) [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _purge_declined(args, plan, selection) -> int:
    if not plan.letters:
        emit(args, {"queue": plan.queue, "purged": [], "missing_ids": plan.missing_ids},
             f"nothing to purge in {plan.queue}")
        return _selection_exit(0, plan.missing_ids, selection)
    emit(args, {"queue": plan.queue, "purged": [], "cancelled": True}, "purge cancelled: nothing deleted")
    return EXIT_FAILED


@command("dlq export")
@dlq_errors
def dlq_export(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.transfer import export

    dlq = _dlq(args)
    written = export(args.settings, dlq, args.file, selection=_selection(args), overwrite=args.force)
    emit(args, {"queue": dlq, "file": str(args.file), "exported": written},
         f"exported {written} message(s) from {dlq} to {args.file}")
    return EXIT_OK


@command("dlq import")
@dlq_errors
def dlq_import(args: argparse.Namespace) -> int:
    from conveyor.workers.dlq.transfer import read_export, run_import

    records = read_export(args.file)
    into = _dlq(args, args.queue) if args.queue else None
    report = run_import(args.settings, records, operator=_operator(), source=str(args.file), into=into)
    text = (f"imported {report.imported} message(s), {report.skipped} already present"
            + "".join(f"\n  {q}: {c['imported']} imported, {c['already_present']} already present"
                      for q, c in report.queues.items())
            + (f"\n  stopped: {report.stopped}" if report.stopped else ""))
    emit(args, {"file": str(args.file), "records": len(records), "imported": report.imported,
                "already_present": report.skipped, "queues": report.queues, "run_ids": report.run_ids,
                "stopped": report.stopped}, text)
    return EXIT_FAILED if report.stopped else EXIT_OK


@command("dlq audit")
@dlq_errors
def dlq_audit(args: argparse.Namespace) -> int:
    from conveyor.db.audit import AuditLog
    from conveyor.db.connection import connect
    from conveyor.workers.dlq.render import jsonable
    from conveyor.workers.dlq.views import audit_run_text, audit_runs_text

    with connect(args.settings.database_url, application_name="conveyor-dlq") as conn:
        log = AuditLog(conn)
        if args.run is None:
            runs = log.runs(action=args.action, queue=args.queue and _dlq(args, args.queue), limit=args.limit)
            emit(args, jsonable(runs), audit_runs_text(runs))
            return EXIT_OK
        run, messages = log.run(args.run), log.messages(args.run)
    if run is None:
        emit(args, {"error": "not_found", "run_id": str(args.run)}, f"no audit run {args.run}")
        return EXIT_NOT_FOUND
    emit(args, jsonable({**run, "messages": messages}), audit_run_text(run, messages))
    return EXIT_OK
