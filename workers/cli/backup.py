"""``conveyor backup stanza-create|check|run|info|verify|restore``: pgBackRest backups with
point-in-time recovery (docs/backup.md).

The work is ``conveyor.db.backup``; this module parses, prints and maps its errors to exit
codes. Every action takes ``--json``; a failure prints ``{"ok": false, "error": KIND,
"message": ..., "hint": ...}`` (or the same as one line on stderr).

Exit codes: 0 ok; 1 failed: WAL archiving failing, a gap in the archived WAL (``info`` too),
another pgBackRest command running, anything else pgBackRest refused; 2 usage or
configuration (a target time without a time zone, a destination that is not an empty
directory, pgbackrest not installed, a bad pgBackRest option); 3 unreachable: the repository
(missing, unreadable, full) or the database; 4 not found: no such stanza, no backup, or a
restore target outside what the backups and the archived WAL cover.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from conveyor.workers.cli.base import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    command,
    emit,
    json_flag,
)

if TYPE_CHECKING:
    from conveyor.db.backup import BackupError, BackupSet, PgBackRest, RecoveryWindow, StanzaInfo

EXIT_BY_KIND = {
    "not_installed": EXIT_USAGE, "configuration": EXIT_USAGE, "restore_refused": EXIT_USAGE,
    "repository_unreachable": EXIT_UNAVAILABLE, "repository_full": EXIT_UNAVAILABLE,
    "database_unreachable": EXIT_UNAVAILABLE,
    "stanza_not_found": EXIT_NOT_FOUND, "no_backups": EXIT_NOT_FOUND, "target_outside_backups": EXIT_NOT_FOUND,
}
EPILOG = ("Exit codes: 0 ok, 1 failed (archiving failing, WAL gap, busy), 2 usage/configuration, "
          "3 repository or database unreachable (or the repository full), 4 not found (stanza, backup, "
          "or a target outside the backups). Settings: CONVEYOR_PGBACKREST_STANZA, CONVEYOR_PGBACKREST_CONFIG, "
          "CONVEYOR_PGBACKREST_USER. See docs/backup.md.")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    backup = sub.add_parser(
        "backup", help="pgBackRest backups, WAL archiving and point-in-time restores",
        description="Full and differential backups of the whole PostgreSQL cluster plus continuous WAL archiving, "
                    "with pgBackRest (run as the data directory's owner, CONVEYOR_PGBACKREST_USER). A restore "
                    "is checked against the backups and the archived WAL before anything is written.",
        epilog=EPILOG)
    actions = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    json_flag(actions.add_parser("stanza-create", help="create the stanza in the repository (once; idempotent)",
                                 epilog=EPILOG))
    json_flag(actions.add_parser("check", epilog=EPILOG, help="archiving works (a WAL switch reaches the "
                                 "repository) and the archived WAL has no gap since the oldest backup"))
    p = actions.add_parser("run", help="take a backup", epilog=EPILOG,
                           description="full: every file; diff: what changed since the last full; incr: since "
                                       "the last backup. Schedule: docs/backup.md (full weekly, diff daily).")
    p.add_argument("--type", dest="kind", choices=("full", "diff", "incr"), default="diff",
                   help="default diff (a full one if there is none yet)")
    json_flag(p)
    json_flag(actions.add_parser("info", epilog=EPILOG, help="backups, archived WAL and the recovery window "
                                 "(exit 1 if the archive has a gap)"))
    json_flag(actions.add_parser("verify", epilog=EPILOG, help="every backup file and WAL segment against its "
                                 "checksum, and the archive's continuity"))
    _restore_parser(actions)


def _restore_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "restore", help="restore the cluster to a point in time into a fresh data directory", epilog=EPILOG,
        description="Checks first, writes nothing if any fails: a backup that ended before the target, continuous "
                    "WAL after it, the target before the newest archived commit. Then restores into DIR (absent "
                    "or empty) with recovery to the target and promotion; start PostgreSQL on DIR afterwards. A "
                    "failed restore leaves DIR empty.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-time", metavar="TIME", help="ISO 8601 with a time zone, e.g. "
                                                              "2026-11-25T10:00:00.250+00:00")
    target.add_argument("--latest", action="store_true", help="to the end of the archived WAL")
    p.add_argument("--to", dest="destination", metavar="DIR", required=True, help="the new data directory")
    p.add_argument("--dry-run", action="store_true", help="only the checks, and the plan")
    json_flag(p)


def _pgbackrest(args: argparse.Namespace) -> PgBackRest:
    from conveyor.db.backup import PgBackRest

    s = args.settings
    return PgBackRest(stanza=s.pgbackrest_stanza, config=s.pgbackrest_config, user=s.pgbackrest_user,
                      executable=s.pgbackrest_bin)


def _failed(args: argparse.Namespace, error: BackupError) -> int:
    report = {"ok": False, "error": error.kind, "message": str(error), "hint": error.hint}
    if getattr(args, "json", False):
        print(_json(report))
    else:
        print(f"conveyor backup: {error}" + (f" (hint: {error.hint})" if error.hint else ""), file=sys.stderr)
    return EXIT_BY_KIND.get(error.kind, EXIT_FAILED)


def _json(data: object) -> str:
    import json

    return json.dumps(data, indent=2, default=str)


@command("backup stanza-create")
def backup_stanza_create(args: argparse.Namespace) -> int:
    from conveyor.db import backup

    try:
        backup.stanza_create(_pgbackrest(args))
    except backup.BackupError as error:
        return _failed(args, error)
    emit(args, {"ok": True, "stanza": args.settings.pgbackrest_stanza},
         f"stanza {args.settings.pgbackrest_stanza} ready")
    return EXIT_OK


@command("backup check")
def backup_check(args: argparse.Namespace) -> int:
    from conveyor.db import backup

    try:
        info = backup.check(_pgbackrest(args))
    except backup.BackupError as error:
        return _failed(args, error)
    emit(args, {"ok": True, "stanza": info.name, "wal_max": info.wal_max},
         f"stanza {info.name}: archiving works, newest archived WAL {info.wal_max}, no gap")
    return EXIT_OK


@command("backup run")
def backup_run(args: argparse.Namespace) -> int:
    from conveyor.db import backup

    try:
        made = backup.run_backup(_pgbackrest(args), args.kind)
    except backup.BackupError as error:
        return _failed(args, error)
    emit(args, {"ok": True, "backup": _backup_data(made)},
         f"{made.type} backup {made.label}: {made.size:,} bytes ({made.repo_size:,} in the repository), "
         f"{made.started:%Y-%m-%d %H:%M:%S} to {made.stopped:%H:%M:%S} UTC")
    return EXIT_OK


@command("backup info")
def backup_info(args: argparse.Namespace) -> int:
    from conveyor.db import backup

    pgbackrest = _pgbackrest(args)
    try:
        info = backup.stanza_info(pgbackrest)
        window = backup.recovery_window(pgbackrest, info, pg_bindir=args.settings.pg_bindir)
    except backup.BackupError as error:
        return _failed(args, error)
    emit(args, _info_data(info, window), _info_text(info, window))
    return EXIT_FAILED if window.gaps else EXIT_OK


@command("backup verify")
def backup_verify(args: argparse.Namespace) -> int:
    from conveyor.db import backup

    try:
        info = backup.verify(_pgbackrest(args))
    except backup.BackupError as error:
        return _failed(args, error)
    emit(args, {"ok": True, "stanza": info.name, "backups": len(info.backups)},
         f"stanza {info.name}: {len(info.backups)} backup(s) and the archived WAL verified, no gap")
    return EXIT_OK


@command("backup restore")
def backup_restore(args: argparse.Namespace) -> int:
    from conveyor.db import backup

    target = _target(args.target_time) if args.target_time else None
    if args.target_time and target is None:
        print(f"conveyor backup: --target-time {args.target_time!r} is not an ISO 8601 time with a time zone",
              file=sys.stderr)
        return EXIT_USAGE
    pgbackrest = _pgbackrest(args)
    try:
        backup.require_fresh_directory(args.destination)
        plan = backup.plan_restore(pgbackrest, target, pg_bindir=args.settings.pg_bindir)
        if not args.dry_run:
            backup.restore(pgbackrest, plan, args.destination)
    except backup.BackupError as error:
        return _failed(args, error)
    to = backup.target_text(plan.target) if plan.target else "the end of the archived WAL"
    done = "would restore" if args.dry_run else "restored"
    emit(args, {"ok": True, "dry_run": args.dry_run, "target": plan.target, "destination": args.destination,
                "backup": _backup_data(plan.backup), "window": _window_data(plan.window)},
         f"{done} backup {plan.backup.label} to {to} into {args.destination}"
         + ("" if args.dry_run else "; start PostgreSQL on it: it recovers to the target, then promotes"))
    return EXIT_OK


def _target(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _backup_data(made: BackupSet) -> dict:
    return {"label": made.label, "type": made.type, "started": made.started, "stopped": made.stopped,
            "size": made.size, "repo_size": made.repo_size, "wal_start": made.wal_start, "prior": made.prior}


def _window_data(window: RecoveryWindow) -> dict:
    return {"earliest": window.earliest, "latest": window.latest, "latest_source": window.latest_source,
            "gaps": window.gaps}


def _info_data(info: StanzaInfo, window: RecoveryWindow) -> dict:
    return {"ok": not window.gaps, "stanza": info.name, "status": info.status, "pg_version": info.pg_version,
            "backups": [_backup_data(b) for b in info.backups],
            "archive": {"id": info.archive_id, "min": info.wal_min, "max": info.wal_max},
            "window": _window_data(window)}


def _info_text(info: StanzaInfo, window: RecoveryWindow) -> str:
    lines = [f"stanza {info.name}: {info.status} (PostgreSQL {info.pg_version or '?'})"]
    lines += [f"  {b.type:<4} {b.label}  {b.stopped:%Y-%m-%d %H:%M:%S} UTC  {b.size:>15,} bytes  "
              f"{b.repo_size:>13,} in repo" for b in info.backups] or ["  no backups"]
    lines.append(f"archived WAL: {info.wal_min or '-'} .. {info.wal_max or '-'}")
    if window.earliest:
        latest = f"{window.latest:%Y-%m-%d %H:%M:%S.%f} UTC" if window.latest else "?"
        lines.append(f"recovery window: after {window.earliest:%Y-%m-%d %H:%M:%S} UTC, before {latest}"
                     + (" (estimated from archive time)" if window.latest_source == "archive_time" else ""))
    if window.gaps:
        lines.append(f"GAP: WAL segment(s) {', '.join(window.gaps[:5])} missing: no recovery can cross them")
    return "\n".join(lines)
