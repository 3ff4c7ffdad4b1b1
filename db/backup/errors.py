"""What can go wrong with a backup or a restore, as Conveyor's own error family.

Every error has a ``kind`` (a stable word for scripts, printed by ``conveyor backup ... --json``)
and a ``hint`` (what to do next). ``conveyor backup`` maps kinds to exit codes
(``workers/cli/backup.py``, docs/backup.md): configuration 2, unreachable 3, not found 4,
everything else 1.
"""

from __future__ import annotations


class BackupError(Exception):
    """A backup, check or restore did not happen; ``str()`` says why in one line."""

    kind = "failed"

    def __init__(self, message: str, *, hint: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code  # pgBackRest's own error code, when it was pgBackRest that refused


class PgBackRestMissing(BackupError):
    kind = "not_installed"


class BackupConfigError(BackupError):
    """pgBackRest's configuration (or an option we passed) is wrong."""

    kind = "configuration"


class RepositoryUnreachable(BackupError):
    """The repository cannot be read or written: missing path, permissions, storage down."""

    kind = "repository_unreachable"


class RepositoryFull(BackupError):
    kind = "repository_full"


class DatabaseUnreachable(BackupError):
    kind = "database_unreachable"


class StanzaNotFound(BackupError):
    kind = "stanza_not_found"


class NoBackups(BackupError):
    kind = "no_backups"


class ArchivingFailed(BackupError):
    """WAL does not reach the repository (``archive_command`` failing): new backups and
    point-in-time recovery past the last archived segment are impossible."""

    kind = "archiving_failed"


class ArchiveGap(BackupError):
    """A WAL segment is missing from the archive between a backup and the newest WAL: no
    recovery can cross it."""

    kind = "archive_gap"


class TargetOutsideBackups(BackupError):
    """The restore target is before the end of the oldest usable backup or after the newest
    archived commit: nothing restores to it."""

    kind = "target_outside_backups"


class RestoreRefused(BackupError):
    """The destination is not a fresh directory (or PostgreSQL runs there)."""

    kind = "restore_refused"


class BackupBusy(BackupError):
    """Another pgBackRest command holds the stanza's lock."""

    kind = "busy"
