"""A PgBouncer of our own (Debian's ``pgbouncer`` binary) in front of a PostgreSQL server, on a
free loopback port, in transaction pooling mode: what the suite runs Conveyor through to prove
it works behind one (``conveyor.db.sessions``). Never the machine's; stopped and deleted after.

``with PgBouncer(server_url) as bouncer:`` writes its configuration (every database of the
server, trust authentication for the named users) into a temporary directory, starts it and
waits until it answers; ``bouncer.url_for(database_url)`` is the same database through it.
``ignore_options=True`` configures ``ignore_startup_parameters = options``: PgBouncer then
accepts Conveyor's startup options and silently drops them (what Conveyor must notice).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.devservices.base import START_TIMEOUT_S, TEMP_PREFIX, DevServicesError
from conveyor.devservices.postgres import _unprivileged_user
from conveyor.devservices.processes import _die_with_parent, _free_ports, _stop_process, _tail, _wait_until

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = {pool_size}
admin_users = postgres
ignore_startup_parameters = {ignored}
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
"""


def pgbouncer_binary() -> str:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DevServicesError("no pgbouncer binary: install Debian's pgbouncer (tests/setup-tools.sh does)")


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of the server of ``server_url``."""

    def __init__(self, server_url: str, *, users: Sequence[str] = ("postgres",), pool_size: int = 20,
                 ignore_options: bool = False) -> None:
        parts = conninfo_to_dict(server_url)
        self._host, self._port = str(parts.get("host") or "127.0.0.1"), str(parts.get("port") or 5432)
        self._users, self._pool_size, self._ignore_options = list(users), pool_size, ignore_options
        self._process: subprocess.Popen | None = None
        self.workdir = ""
        self.port = 0

    def url_for(self, database_url: str) -> str:
        """``database_url`` (a postgresql:// URL) with this PgBouncer as its host and port."""
        parts = urlsplit(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __enter__(self) -> "PgBouncer":
        self.workdir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}pgbouncer-{os.getpid()}-")
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            _stop_process(self._process, signal.SIGINT, grace=10)
            self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _start(self) -> None:
        (self.port,) = _free_ports(1)
        ignored = "extra_float_digits,options" if self._ignore_options else "extra_float_digits"
        with open(os.path.join(self.workdir, "pgbouncer.ini"), "w") as ini:
            ini.write(CONFIG.format(host=self._host, port=self._port, listen_port=self.port, workdir=self.workdir,
                                    pool_size=self._pool_size, ignored=ignored))
        with open(os.path.join(self.workdir, "userlist.txt"), "w") as users:
            users.writelines(f'"{name}" ""\n' for name in self._users)
        command = [pgbouncer_binary(), os.path.join(self.workdir, "pgbouncer.ini")]
        user = _unprivileged_user()  # PgBouncer refuses to run as root
        if user is not None:
            os.chmod(self.workdir, 0o777)
            command[1:1] = ["-u", user.pw_name]
        self._process = subprocess.Popen(command, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent(signal.SIGTERM))
        probe = make_conninfo("", host="127.0.0.1", port=str(self.port), dbname="postgres", user=self._users[0])
        if not _wait_until(lambda: _answers(probe), START_TIMEOUT_S, alive=self._process):
            raise DevServicesError(f"PgBouncer did not start; its log says:\n"
                                   f"{_tail(os.path.join(self.workdir, 'pgbouncer.log'))}")


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2, prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True
