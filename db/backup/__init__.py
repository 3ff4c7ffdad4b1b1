"""Backups with point-in-time recovery: a thin, typed wrapper over pgBackRest (docs/backup.md).

- ``pgbackrest.py``: calling the ``pgbackrest`` executable (as the data directory's owner) and
  classifying its failures into ``errors.py``'s family;
- ``repository.py``: what ``info`` and ``repo-ls`` say, as data, and the pure decisions on it
  (which backup serves a target, WAL gaps);
- ``walcommits.py``: the newest archived commit, which bounds every restore target;
- ``operations.py``: stanza-create, check, backup, verify, info and the recovery window;
- ``restore.py``: a restore planned (refused with the reason) before anything is written.
"""

from conveyor.db.backup.errors import (
    ArchiveGap,
    ArchivingFailed,
    BackupBusy,
    BackupConfigError,
    BackupError,
    DatabaseUnreachable,
    NoBackups,
    PgBackRestMissing,
    RepositoryFull,
    RepositoryUnreachable,
    RestoreRefused,
    StanzaNotFound,
    TargetOutsideBackups,
)
from conveyor.db.backup.operations import (
    RecoveryWindow,
    check,
    read_info,
    recovery_window,
    run_backup,
    stanza_create,
    stanza_info,
    verify,
    wal_files,
)
from conveyor.db.backup.pgbackrest import PgBackRest, classify
from conveyor.db.backup.repository import BackupSet, StanzaInfo, WalFile
from conveyor.db.backup.restore import RestorePlan, plan_restore, require_fresh_directory, restore, target_text

__all__ = [
    "ArchiveGap", "ArchivingFailed", "BackupBusy", "BackupConfigError", "BackupError", "BackupSet",
    "DatabaseUnreachable", "NoBackups", "PgBackRest", "PgBackRestMissing", "RecoveryWindow", "RepositoryFull",
    "RepositoryUnreachable", "RestorePlan", "RestoreRefused", "StanzaInfo", "StanzaNotFound",
    "TargetOutsideBackups", "WalFile", "check", "classify", "plan_restore", "read_info", "recovery_window",
    "require_fresh_directory", "restore", "run_backup", "stanza_create", "stanza_info", "target_text", "verify",
    "wal_files",
]
