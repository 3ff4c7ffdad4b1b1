"""Restores, decided before anything is written.

``plan_restore`` refuses, with the reason, everything pgBackRest or PostgreSQL would only
discover halfway: no stanza or no backup; a target before the end of the oldest backup; a gap
in the WAL after the backup it would start from; a target at or after the newest archived
commit (recovery would end before reaching it and PostgreSQL would refuse to start). Only then
does ``restore`` run ``pgbackrest restore`` into a fresh directory (recovery to the target,
then promote), and a restore that fails leaves that directory empty again: never a
half-restored data directory that could be started by mistake.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone

from conveyor.db.backup.errors import BackupConfigError, RestoreRefused, TargetOutsideBackups
from conveyor.db.backup.operations import RecoveryWindow, read_info, recovery_window, refuse_gaps, wal_files
from conveyor.db.backup.pgbackrest import PgBackRest
from conveyor.db.backup.repository import BackupSet, backup_for, repo_path, require_backups


@dataclass(frozen=True)
class RestorePlan:
    target: datetime | None          # None: to the end of the archived WAL
    backup: BackupSet
    window: RecoveryWindow


def plan_restore(pgbackrest: PgBackRest, target: datetime | None, *, pg_bindir: str | None = None) -> RestorePlan:
    """The backup a restore to ``target`` (None: the newest archived WAL) starts from, or the
    reason none can reach it (``TargetOutsideBackups``, ``ArchiveGap``, ``NoBackups``, ...)."""
    if target is not None and target.tzinfo is None:
        raise BackupConfigError("the restore target needs a time zone, e.g. 2026-11-25T10:00:00+00:00")
    info = read_info(pgbackrest)
    require_backups(info, repo_path=repo_path(pgbackrest.config, pgbackrest.stanza))
    wal = wal_files(pgbackrest, info)
    window = recovery_window(pgbackrest, info, pg_bindir=pg_bindir, wal=wal)
    backup = max(info.backups, key=lambda b: b.stopped) if target is None else backup_for(info, target)
    if backup is None:
        raise TargetOutsideBackups(f"{_text(target)} is before the end of the oldest backup: the earliest "
                                   f"target is {_text(window.earliest)}",
                                   hint="conveyor backup info lists the backups and the recovery window")
    refuse_gaps(info, wal, backup)
    if target is not None and window.latest is not None and target >= window.latest:
        raise TargetOutsideBackups(f"{_text(target)} is not before the newest archived commit "
                                   f"({_text(window.latest)}): recovery would end before reaching it",
                                   hint="pick an earlier time, or archive the current WAL first "
                                        "(conveyor backup check) if the server still runs")
    return RestorePlan(target, backup, window)


def restore(pgbackrest: PgBackRest, plan: RestorePlan, destination: str) -> None:
    """Restore ``plan`` into ``destination`` (absent or empty); it is left empty on failure."""
    destination = os.path.abspath(destination)
    created = _fresh_directory(destination, pgbackrest.user)
    args = [f"--pg1-path={destination}", f"--set={plan.backup.label}"]
    if plan.target is not None:
        args += ["--type=time", f"--target={target_text(plan.target)}", "--target-action=promote"]
    try:
        pgbackrest.run("restore", *args)
    except BaseException:
        _empty(destination, remove=created)
        raise


def target_text(target: datetime) -> str:
    """The form pgBackRest and PostgreSQL both read exactly: UTC, microseconds, ``+00``."""
    return target.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"


def require_fresh_directory(path: str) -> None:
    """Refuse a destination that exists and is not an empty directory, or has no parent."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path) or os.listdir(path):
            raise RestoreRefused(f"{path} is not an empty directory: restore into a fresh one",
                                 hint="never over a data directory: move it aside first")
    elif not os.path.isdir(os.path.dirname(path)):
        raise RestoreRefused(f"the parent of {path} does not exist")


def _fresh_directory(path: str, user: str | None) -> bool:
    """Make sure ``path`` is an empty directory the restoring user owns; True if we made it."""
    require_fresh_directory(path)
    if os.path.exists(path):
        return False
    os.mkdir(path, 0o700)
    if user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return True


def _empty(path: str, *, remove: bool) -> None:
    if remove:
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in os.listdir(path):
        child = os.path.join(path, name)
        if os.path.isdir(child) and not os.path.islink(child):
            shutil.rmtree(child, ignore_errors=True)
        else:
            os.remove(child)


def _text(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).isoformat(sep=" ", timespec="microseconds") if moment else "unknown"
