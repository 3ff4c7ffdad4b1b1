"""The backup operations a DBA runs, over ``PgBackRest``: create the stanza, check archiving,
take a backup, read what the repository holds and the recovery window, plan and run a restore.

Restores are ``restore.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from conveyor.db.backup.errors import ArchiveGap, BackupError, RepositoryFull, RepositoryUnreachable, StanzaNotFound
from conveyor.db.backup.pgbackrest import PgBackRest
from conveyor.db.backup.repository import (
    BackupSet,
    StanzaInfo,
    WalFile,
    gaps,
    newest_segments,
    parse_info,
    parse_wal_listing,
    repo_path,
    require_backups,
    require_stanza,
)
from conveyor.db.backup.walcommits import newest_commit

BackupType = Literal["full", "diff", "incr"]
CHECK_TIMEOUT_S = 300.0
FILE_WRITE = 64                   # pgBackRest's FileWriteError
FULL_BELOW = 16 * 1024 * 1024     # free bytes under which a failed write means "full"


@dataclass(frozen=True)
class RecoveryWindow:
    """Targets a restore can reach: after ``earliest`` (the oldest backup's end) and before
    ``latest`` (the newest archived commit; ``latest_source`` "archive_time" when it could only
    be estimated from when the newest segment was archived). ``gaps``: missing segments."""

    earliest: datetime | None
    latest: datetime | None
    latest_source: Literal["commit", "archive_time", "none"]
    gaps: list[str] = field(default_factory=list)


def stanza_create(pgbackrest: PgBackRest) -> None:
    _run(pgbackrest, "stanza-create", timeout=CHECK_TIMEOUT_S)


def check(pgbackrest: PgBackRest) -> StanzaInfo:
    """pgBackRest's check (configuration, and a WAL switch that must reach the repository),
    then the archive's continuity since the oldest backup."""
    _run(pgbackrest, "check", timeout=CHECK_TIMEOUT_S)
    info = stanza_info(pgbackrest)
    if info.backups:
        refuse_gaps(info, wal_files(pgbackrest, info), min(info.backups, key=lambda b: b.stopped))
    return info


def run_backup(pgbackrest: PgBackRest, kind: BackupType) -> BackupSet:
    """A backup of ``kind`` (pgBackRest makes a diff or incr without a prior full a full one)."""
    _run(pgbackrest, "backup", f"--type={kind}")
    info = read_info(pgbackrest)
    return max(info.backups, key=lambda b: b.stopped)


def verify(pgbackrest: PgBackRest) -> StanzaInfo:
    """pgBackRest's verify (every file of every backup and WAL segment against its checksum),
    then the archive's continuity since the oldest backup."""
    _run(pgbackrest, "verify")
    info = read_info(pgbackrest)
    require_backups(info, repo_path=repo_path(pgbackrest.config, pgbackrest.stanza))
    refuse_gaps(info, wal_files(pgbackrest, info), min(info.backups, key=lambda b: b.stopped))
    return info


def read_info(pgbackrest: PgBackRest) -> StanzaInfo:
    return parse_info(pgbackrest.run("info", "--output=json", timeout=CHECK_TIMEOUT_S), pgbackrest.stanza)


def stanza_info(pgbackrest: PgBackRest) -> StanzaInfo:
    """``read_info``, refusing a stanza that is missing or whose repository cannot be read."""
    info = read_info(pgbackrest)
    require_stanza(info, repo_path=repo_path(pgbackrest.config, pgbackrest.stanza))
    return info


def _run(pgbackrest: PgBackRest, command: str, *args: str, timeout: float = 3600.0) -> str:
    """``pgbackrest.run``, refined with what only the repository's file system tells: a
    "stanza not found" where the repository's path does not exist at all is the repository's
    absence (an unmounted volume); a failed write with (almost) no space left is a full one
    (pgBackRest names the errno only when it retried)."""
    try:
        return pgbackrest.run(command, *args, timeout=timeout)
    except StanzaNotFound as error:
        path = repo_path(pgbackrest.config, pgbackrest.stanza)
        if path is not None and not os.path.isdir(path):
            raise RepositoryUnreachable(f"the repository path {path} does not exist ({error})",
                                        hint="is its storage mounted? is repo1-path right?") from error
        raise
    except BackupError as error:
        free = _free_bytes(repo_path(pgbackrest.config, pgbackrest.stanza))
        if error.code == FILE_WRITE and type(error) is BackupError and free is not None and free < FULL_BELOW:
            raise RepositoryFull(f"{error} (the repository has {free:,} bytes free)", code=error.code,
                                 hint="free space or expire old backups (repo1-retention-full), then retry") from error
        raise


def _free_bytes(path: str | None) -> int | None:
    try:
        stat = os.statvfs(path) if path else None
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize if stat else None


def wal_files(pgbackrest: PgBackRest, info: StanzaInfo) -> list[WalFile]:
    if info.archive_id is None:
        return []
    listing = pgbackrest.run("repo-ls", "--output=json", "--recurse",
                             f"archive/{pgbackrest.stanza}/{info.archive_id}", timeout=CHECK_TIMEOUT_S)
    return parse_wal_listing(listing, info.archive_id, pgbackrest.stanza)


def recovery_window(pgbackrest: PgBackRest, info: StanzaInfo, *, pg_bindir: str | None = None,
                    wal: list[WalFile] | None = None) -> RecoveryWindow:
    wal = wal_files(pgbackrest, info) if wal is None else wal
    if not info.backups:
        return RecoveryWindow(None, None, "none")
    oldest = min(info.backups, key=lambda b: b.stopped)
    missing = gaps(wal, start=oldest.wal_start)
    latest = newest_commit(pgbackrest, wal, pg_version=info.pg_version, pg_bindir=pg_bindir)
    if latest is not None:
        return RecoveryWindow(oldest.stopped + timedelta(seconds=1), latest, "commit", missing)
    newest = newest_segments(wal)
    return RecoveryWindow(oldest.stopped + timedelta(seconds=1), newest[0].archived_at if newest else None,
                          "archive_time" if newest else "none", missing)


def refuse_gaps(info: StanzaInfo, wal: list[WalFile], backup: BackupSet) -> None:
    missing = gaps(wal, start=backup.wal_start)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ArchiveGap(f"stanza {info.name!r}: WAL segment(s) {shown} missing from the archive after backup "
                         f"{backup.label}: no recovery from it can cross the gap",
                         hint="find why archive_command failed (the server log), then take a full backup: "
                              "conveyor backup run --type full")
