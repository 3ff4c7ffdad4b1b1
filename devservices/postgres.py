"""PostgreSQL servers of our own from the installed binaries (initdb + postgres on a free
loopback port): the throwaway server of the test suite and demo, and a restartable one for
fault tests."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Literal

import psycopg

from conveyor.devservices.base import START_TIMEOUT_S, TEMP_PREFIX, DevServicesError
from conveyor.devservices.processes import (
    _die_with_parent,
    _free_ports,
    _stop_process,
    _sweep_stale_temp_dirs,
    _tail,
    _wait_until,
)


def postgres_bindir() -> str:
    """Directory with initdb/postgres: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout
        candidates.append(out.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True)
    for bindir in candidates:
        if bindir and all(os.access(os.path.join(bindir, exe), os.X_OK) for exe in ("initdb", "postgres")):
            return bindir
    raise DevServicesError("no PostgreSQL server binaries (initdb, postgres) found; install postgresql")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise DevServicesError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@contextmanager
def _throwaway_postgres(workdir: str) -> Iterator[tuple[str, str]]:
    """A throwaway server (commits not durable: the data is discarded) in ``workdir``; yields
    (URL of db 'postgres' as superuser, detail)."""
    started = time.monotonic()
    with RestartablePostgres(workdir=workdir, durable=False) as server:
        version = os.path.basename(os.path.dirname(server.bindir))
        yield server.database_url, (f"PostgreSQL {version} on :{server.port} ready in "
                                    f"{time.monotonic() - started:.1f} s (initdb {server.initdb_s:.1f} s of it)")


def _initdb(bindir: str, workdir: str) -> tuple[str, dict[str, str], dict[str, object]]:
    """Create ``workdir`` and a cluster in ``workdir/data`` (trust auth, superuser ``postgres``);
    returns (data directory, environment, Popen/run keywords that run as the unprivileged user)."""
    user = _unprivileged_user()
    os.mkdir(workdir, 0o700)
    as_user: dict[str, object] = {}
    if user is not None:
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = os.path.join(workdir, "data")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    initdb = [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "-N"]
    done = subprocess.run(initdb, cwd=workdir, env=env, capture_output=True, text=True, **as_user)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise DevServicesError(f"initdb failed: {done.stderr.strip()[-800:]}")
    return data, env, as_user


def _postgres_ready(url: str, data_directory: str) -> bool:
    """Does *our* server answer there (not another one that holds the port)?"""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error:
        return False
    return row is not None and os.path.realpath(row[0]) == os.path.realpath(data_directory)


class RestartablePostgres:
    """A PostgreSQL server of our own, for tests that crash and restart the database; never
    the machine's. ``with RestartablePostgres() as pg:`` runs initdb and starts it;
    ``pg.stop()`` stops it the way a crash does (``pg_ctl stop -m immediate``: no shutdown
    checkpoint, crash recovery from the WAL at the next start), ``pg.start()`` boots it
    again on the same port with the same data; leaving the block deletes it.
    ``database_url`` is database ``postgres`` as the superuser ``postgres``.

    ``durable`` (the default) keeps ``synchronous_commit`` on, so a commit the server
    acknowledged survives ``stop()``; only ``fsync`` is off, because the machine itself
    does not crash in these tests (the kernel still has every write). The throwaway server
    of the suite and the demo is this class with ``durable=False`` in a given ``workdir``.

    ``settings`` (extra ``-c name=value`` server settings, e.g. ``archive_mode``,
    ``archive_command``) marks a server whose WAL is archived and restored (backups, point-in-time
    recovery): such a server keeps ``full_page_writes`` on, without which recovery cannot repair
    the torn pages of a base backup copied while pages changed; without ``settings`` the
    server starts exactly as before. ``use_data_directory(path)`` points a
    stopped server at another data directory (a restored one), on the same port.
    """

    def __init__(self, *, workdir: str | None = None, durable: bool = True,
                 settings: Mapping[str, str] | None = None) -> None:
        self._stack = ExitStack()
        self._server: subprocess.Popen | None = None
        self._own_workdir = workdir is None
        self.workdir = workdir or ""
        self.durable = durable
        self.settings = dict(settings) if settings is not None else None
        self.data_directory = ""
        self.database_url = ""
        self.port = 0
        self.initdb_s = 0.0
        self.bindir = ""

    def __enter__(self) -> "RestartablePostgres":
        if self._own_workdir:
            _sweep_stale_temp_dirs()
            base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
            os.chmod(base, 0o711)  # the unprivileged postgres user must reach its subdirectory
            self._stack.callback(shutil.rmtree, base, ignore_errors=True)
            self.workdir = os.path.join(base, "postgres")
        try:
            self.bindir = postgres_bindir()
            started = time.monotonic()
            self.data_directory, self._env, self._as_user = _initdb(self.bindir, self.workdir)
            self.initdb_s = time.monotonic() - started
            self._stack.callback(self._quit)
            self._start_on_a_free_port()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start_on_a_free_port(self) -> None:
        for _attempt in range(3):  # a port picked as free can be taken before postgres binds it
            (self.port,) = _free_ports(1)
            self.database_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            try:
                self.start()
                return
            except DevServicesError as exc:
                if "already in use" not in str(exc):
                    raise
        raise DevServicesError("PostgreSQL found no free port in 3 attempts")

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def start(self, *, timeout: float = START_TIMEOUT_S) -> None:
        """Boot the server (again, recovering from its WAL) and wait until it answers."""
        log_path = os.path.join(self.workdir, "postgres.log")
        with open(log_path, "ab") as log_file:
            self._server = subprocess.Popen(
                [f"{self.bindir}/postgres", "-D", self.data_directory, "-p", str(self.port), "-k", self.workdir,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", *self._server_settings()],
                cwd=self.workdir, env=self._env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGQUIT), **self._as_user,  # type: ignore[call-overload]
            )
        if not _wait_until(lambda: _postgres_ready(self.database_url, self.data_directory), timeout,
                           alive=self._server):
            server, self._server = self._server, None
            _stop_process(server, signal.SIGQUIT, grace=5)
            raise DevServicesError(f"PostgreSQL did not start; its log says:\n{_tail(log_path)}")

    def _server_settings(self) -> list[str]:
        """``-c`` arguments after fsync: as before without ``settings``; with them, full page
        writes stay on (unless a setting says otherwise) and each setting follows."""
        args = [] if self.settings is not None else ["-c", "full_page_writes=off"]
        if not self.durable:
            args += ["-c", "synchronous_commit=off"]
        for name, value in (self.settings or {}).items():
            args += ["-c", f"{name}={value}"]
        return args

    def use_data_directory(self, path: str) -> None:
        """Serve ``path`` (e.g. a restored data directory, owned by the server's user) from the
        next ``start()`` on; the server must be stopped."""
        if self.running:
            raise DevServicesError("stop the server before pointing it at another data directory")
        self.data_directory = path

    def stop(self, *, mode: Literal["immediate", "fast", "smart"] = "immediate") -> None:
        """``pg_ctl stop -m MODE`` (as the server's user), then reap the server."""
        if self._server is None:
            return
        pg_ctl = os.path.join(self.bindir, "pg_ctl")
        if os.access(pg_ctl, os.X_OK):
            subprocess.run([pg_ctl, "-D", self.data_directory, "-m", mode, "-w", "-t", "30", "stop"],
                           cwd=self.workdir, env=self._env, capture_output=True, timeout=40,
                           **self._as_user)  # type: ignore[call-overload]
        signals = {"immediate": signal.SIGQUIT, "fast": signal.SIGINT, "smart": signal.SIGTERM}
        _stop_process(self._server, signals[mode], grace=30)  # a no-op once pg_ctl has stopped it
        self._server = None

    def _quit(self) -> None:
        if self._server is not None:
            _stop_process(self._server, signal.SIGQUIT, grace=10)  # the data is discarded
            self._server = None
