"""Running the ``pgbackrest`` executable, and turning its failures into Conveyor's errors.

``PgBackRest`` holds how to call it (stanza, configuration file, the OS user to run as: the
data directory's owner, since pgBackRest must read and write files as that user) and
``run(command, *options)`` returns its standard output or raises a ``BackupError`` chosen by
``classify`` from pgBackRest's exit code (its error code, ``src/build/error/error.yaml``
upstream) and message. Nothing here knows what a backup means; ``repository.py`` and
``restore.py`` do.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass

from conveyor.db.backup.errors import (
    ArchivingFailed,
    BackupBusy,
    BackupConfigError,
    BackupError,
    DatabaseUnreachable,
    PgBackRestMissing,
    RepositoryFull,
    RepositoryUnreachable,
    RestoreRefused,
    StanzaNotFound,
    TargetOutsideBackups,
)

# pgBackRest's error codes (upstream src/build/error/error.yaml) that decide the kind.
CONFIG_CODES = frozenset({27, 29, 30, 31, 32, 37, 46, 48, 68, 87, 89, 96})
REPOSITORY_CODES = frozenset({41, 42, 47, 49, 53, 73, 98, 101, 103, 105})
ARCHIVE_TIMEOUT, LOCK_ACQUIRE, FILE_MISSING, BACKUP_SET_INVALID = 82, 50, 55, 75
PG_RUNNING, PATH_NOT_EMPTY, DB_CONNECT = 38, 40, 56
ERROR_LINE = re.compile(r"ERROR: \[(\d{3})\]: (.*)")
OS_CAUSE = re.compile(r": \[\d+\] ([^\n]+)")  # "...: [13] Permission denied" on a detail line
DEFAULT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class PgBackRest:
    """How to call pgBackRest for one stanza (keyword-only, explicit defaults)."""

    stanza: str = "conveyor"
    config: str | None = None       # None: pgBackRest's default (/etc/pgbackrest/pgbackrest.conf)
    user: str | None = None         # None: the current user; else run as this one (needs root)
    executable: str = "pgbackrest"

    def argv(self, command: str, *args: str) -> list[str]:
        config = [f"--config={self.config}"] if self.config else []
        return [self._executable(), command, *config, f"--stanza={self.stanza}", *args]

    def run(self, command: str, *args: str, timeout: float = DEFAULT_TIMEOUT_S) -> str:
        """Run ``pgbackrest COMMAND [options and parameters]``; its stdout, or a classified
        ``BackupError``."""
        return self.run_bytes(command, *args, timeout=timeout).decode(errors="replace")

    def run_bytes(self, command: str, *args: str, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
        try:
            done = subprocess.run(self.argv(command, *args), capture_output=True, timeout=timeout,
                                  cwd="/", **self._as_user())  # type: ignore[call-overload]
        except subprocess.TimeoutExpired as exc:
            raise BackupError(f"pgbackrest {command} did not finish within {timeout:g} s") from exc
        if done.returncode != 0:
            raise classify(command, done.returncode, done.stderr.decode(errors="replace"))
        return done.stdout

    def _executable(self) -> str:
        found = shutil.which(self.executable)
        if found is None:
            raise PgBackRestMissing(f"pgbackrest ({self.executable}) is not installed or not on PATH",
                                    hint="install Debian's pgbackrest package (apt-get install pgbackrest)")
        return found

    def _as_user(self) -> dict[str, object]:
        if self.user is None:
            return {}
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise BackupConfigError(f"no such OS user {self.user!r} (CONVEYOR_PGBACKREST_USER)") from None
        if entry.pw_uid == os.geteuid():
            return {}
        if os.geteuid() != 0:
            raise BackupConfigError(f"running pgbackrest as {self.user!r} needs root; run this command as "
                                    f"{self.user!r} instead")
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def classify(command: str, returncode: int, stderr: str) -> BackupError:
    """The Conveyor error for a failed pgBackRest command (pure: from its code and message)."""
    found = ERROR_LINE.search(stderr)
    code = int(found.group(1)) if found else returncode
    detail = " ".join(line.strip() for line in stderr.strip().splitlines() if line.strip())
    message = f"pgbackrest {command} failed: {found.group(2).strip() if found else detail[:300]}"
    cause = OS_CAUSE.search(stderr)
    if cause and cause.group(1).strip() not in message:
        message += f" ({cause.group(1).strip()})"
    hints = " ".join(h.strip() for h in re.findall(r"HINT: (.*)", stderr))
    kind = _kind(code, stderr)
    return kind(message, hint=hints or None, code=code)


def _kind(code: int, stderr: str) -> type[BackupError]:
    if "No space left on device" in stderr or "[28]" in stderr:
        return RepositoryFull
    if code == DB_CONNECT or "DbConnectError" in stderr:
        return DatabaseUnreachable
    if code == ARCHIVE_TIMEOUT:
        return ArchivingFailed
    if code == LOCK_ACQUIRE:
        return BackupBusy
    if code in (PG_RUNNING, PATH_NOT_EMPTY):
        return RestoreRefused
    if code == BACKUP_SET_INVALID:
        return TargetOutsideBackups
    if code == FILE_MISSING and re.search(r"(archive|backup)\.info", stderr):
        return StanzaNotFound
    if code in REPOSITORY_CODES or "Permission denied" in stderr:
        return RepositoryUnreachable
    if code in CONFIG_CODES:
        return BackupConfigError
    return BackupError
