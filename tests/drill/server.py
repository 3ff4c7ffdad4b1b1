"""A PostgreSQL of our own whose WAL pgBackRest archives into a repository of our own.

``with ArchivingPostgres() as server:`` makes one temp directory holding the server's
(``postgres/``, a ``RestartablePostgres`` with ``archive_mode`` on and full page writes) and
pgBackRest's (``pgbackrest/``: the configuration file, the repository, logs, locks, spool),
everything owned by the server's user, as pgBackRest must run as the data directory's owner.
``write_config()`` rewrites the configuration (another repository path, extra options), which
``archive_command`` reads at every segment. Leaving the block stops the server and deletes
the directory. Never the machine's servers, never /etc/pgbackrest.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from contextlib import ExitStack

from conveyor.db.backup import PgBackRest
from conveyor.devservices import TEMP_PREFIX, RestartablePostgres

STANZA = "conveyor"


def server_user() -> pwd.struct_passwd | None:
    """Who the server (and so pgBackRest) runs as: ``postgres`` when we are root."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


class ArchivingPostgres:
    def __init__(self, *, archive_timeout_s: int = 5, stanza: str = STANZA, archive_command: str | None = None,
                 pgbackrest_options: dict[str, str] | None = None) -> None:
        self.archive_timeout_s = archive_timeout_s
        self.stanza = stanza
        self.options = dict(pgbackrest_options or {})
        self._archive_command = archive_command
        self._stack = ExitStack()

    def __enter__(self) -> "ArchivingPostgres":
        self.base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-backup-")
        os.chmod(self.base, 0o711)
        self._stack.callback(shutil.rmtree, self.base, ignore_errors=True)
        try:
            self.home = self.make_directory("pgbackrest")
            self.repo = self.make_directory("pgbackrest/repo")
            for name in ("log", "lock", "spool"):
                self.make_directory(f"pgbackrest/{name}")
            self.config = os.path.join(self.home, "pgbackrest.conf")
            self.workdir = os.path.join(self.base, "postgres")
            self.postgres = RestartablePostgres(workdir=self.workdir, settings=self.server_settings())
            self._stack.enter_context(self.postgres)
            self.write_config()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def server_settings(self) -> dict[str, str]:
        command = self._archive_command or f"pgbackrest --config={self.config} --stanza={self.stanza} archive-push %p"
        return {"archive_mode": "on", "wal_level": "replica", "archive_command": command,
                "archive_timeout": str(self.archive_timeout_s)}

    def make_directory(self, relative: str) -> str:
        path = os.path.join(self.base, relative)
        os.makedirs(path, mode=0o750, exist_ok=True)
        user = server_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
        return path

    def write_config(self, *, repo: str | None = None, **options: str) -> None:
        """(Re)write pgbackrest.conf: this cluster as the stanza's pg1, the repository (ours
        unless ``repo``), short timeouts so a failing case fails in seconds."""
        settings = {"repo1-path": repo or self.repo, "repo1-retention-full": "2", "compress-type": "lz4",
                    "start-fast": "y", "archive-timeout": "20", "job-retry": "0",
                    "log-path": f"{self.home}/log", "lock-path": f"{self.home}/lock",
                    "spool-path": f"{self.home}/spool", "log-level-console": "warn", "log-level-file": "info",
                    **self.options, **options}
        stanza = {"pg1-path": self.postgres.data_directory, "pg1-port": str(self.postgres.port),
                  "pg1-socket-path": self.workdir}
        lines = ["[global]", *(f"{k}={v}" for k, v in settings.items()), "", f"[{self.stanza}]",
                 *(f"{k}={v}" for k, v in stanza.items()), ""]
        with open(self.config, "w") as handle:
            handle.write("\n".join(lines))
        os.chmod(self.config, 0o644)

    @property
    def pgbackrest(self) -> PgBackRest:
        user = server_user()
        return PgBackRest(stanza=self.stanza, config=self.config, user=user.pw_name if user else None)

    def environment(self) -> dict[str, str]:
        """CONVEYOR_* settings for ``conveyor backup`` against this repository."""
        user = server_user()
        return {"CONVEYOR_PGBACKREST_STANZA": self.stanza, "CONVEYOR_PGBACKREST_CONFIG": self.config,
                **({"CONVEYOR_PGBACKREST_USER": user.pw_name} if user else {})}
