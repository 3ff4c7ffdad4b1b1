"""A Patroni cluster of our own: one etcd member and three PostgreSQL members managed by Patroni
(Debian's ``etcd-server`` and ``patroni`` packages), on free loopback ports, in a temp
directory; for the failover tests. Never the machine's servers.

``with PatroniCluster(synchronous=True) as cluster:`` starts etcd, then the three Patroni
members (one bootstraps the cluster with initdb, the others clone it with pg_basebackup), and
waits until one leads and two replicas stream from it (one of them synchronous when
``synchronous``). ``cluster.database_url`` is the libpq multi-host URL the workers use:

    postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/postgres?target_session_attrs=read-write

libpq tries the hosts in turn and keeps the first that accepts writes, so after a failover
the next connection finds the new primary without a proxy.

``kill_primary()`` is a dead host: SIGKILL of the leader's Patroni and of its whole PostgreSQL
(the postmaster and its backends share a process group of their own: Patroni starts it from
a helper that called ``setsid``), at once; ``wait_for_leader()`` waits until another member leads and accepts writes;
``restart(name)`` starts a dead member's Patroni again, which rejoins as a replica (with
pg_rewind when its WAL went past the fork).

Settings (Patroni 3.0): ``ttl`` 10 s, ``loop_wait`` 1 s, ``retry_timeout`` 4 s (Patroni's
rule: ``loop_wait + 2 * retry_timeout <= ttl``); ``synchronous_mode`` with
``synchronous_mode_strict`` (a commit is acknowledged only once a synchronous standby has
it: with no standby, writes wait rather than go on unreplicated) and ``synchronous_commit``
on; with ``synchronous=False`` replication is asynchronous (a failover may lose what the
dead primary acknowledged and had not yet sent). As in ``RestartablePostgres``, ``fsync`` is
off: the machine itself never crashes in these tests (a SIGKILL loses nothing the kernel has).
PostgreSQL and Patroni run as ``postgres`` when we are root (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field

import psycopg

from conveyor.devservices.base import TEMP_PREFIX, DevServicesError
from conveyor.devservices.postgres import _unprivileged_user, postgres_bindir
from conveyor.devservices.processes import _die_with_parent, _free_ports, _stop_process, _sweep_stale_temp_dirs, _tail

TTL_S, LOOP_WAIT_S, RETRY_TIMEOUT_S = 10, 1, 4
MEMBERS = 3


def patroni_available() -> str | None:
    """None when ``patroni`` and ``etcd`` are installed; otherwise what is missing."""
    missing = [tool for tool in ("patroni", "etcd") if shutil.which(tool) is None]
    return f"not installed: {', '.join(missing)} (tests/setup-tools.sh installs them)" if missing else None


@dataclass
class Member:
    name: str
    port: int                       # PostgreSQL
    api_port: int                   # Patroni's REST API
    workdir: str
    config_path: str
    log_path: str
    popen: subprocess.Popen | None = None
    starts: int = 0

    @property
    def data_dir(self) -> str:
        return os.path.join(self.workdir, "data")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None


@dataclass
class Killed:
    """What ``kill_primary`` did."""

    name: str
    patroni_pid: int | None
    postmaster_pid: int | None
    at: float                        # time.time() of the kill
    lsn: str | None = None           # the primary's WAL position just before (pg_current_wal_lsn)
    extra: dict = field(default_factory=dict)


class PatroniCluster:
    def __init__(self, *, synchronous: bool = True, workdir: str | None = None, members: int = MEMBERS,
                 scope: str | None = None, logs_to: str | None = None) -> None:
        self.synchronous = synchronous
        self._own_workdir = workdir is None
        self.workdir = workdir or ""
        self.size = members
        self.logs_to = logs_to  # copy etcd's and the members' logs there when stopping
        self.scope = scope or f"conveyor-{os.getpid()}-{os.urandom(3).hex()}"
        self.members: dict[str, Member] = {}
        self._stack = ExitStack()
        self._etcd: subprocess.Popen | None = None
        self.etcd_port = 0
        self._user = _unprivileged_user()
        self._as_user: dict[str, object] = (
            {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []} if self._user else {})

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "PatroniCluster":
        missing = patroni_available()
        if missing:
            raise DevServicesError(f"Patroni cluster: {missing}")
        if self._own_workdir:
            _sweep_stale_temp_dirs()
            self.workdir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-patroni-")
            self._stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        else:
            os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o711)  # the unprivileged postgres user must reach its subdirectories
        try:
            self.bindir = postgres_bindir()
            self._stack.callback(self._stop_everything)
            self._start_etcd()
            ports = _free_ports(2 * self.size)
            for n in range(self.size):
                member = self._member(f"pg{n + 1}", ports[2 * n], ports[2 * n + 1])
                self.members[member.name] = member
            first = self.members["pg1"]
            self.start(first.name)  # bootstraps alone: the others clone it
            self._wait(lambda: self._role(first) in ("master", "primary") and self._writable(first), 90,
                       f"{first.name} did not bootstrap the cluster")
            for member in list(self.members.values())[1:]:
                self.start(member.name)
            self.wait_healthy(timeout=120)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def database_url(self) -> str:
        """The multi-host URL (database ``postgres``, superuser) that finds the primary."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members.values())
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    # -- etcd ----------------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client, peer = _free_ports(2)
        self.etcd_port = client
        data = os.path.join(self.workdir, "etcd")
        log_path = os.path.join(self.workdir, "etcd.log")
        argv = ["etcd", "--name", "etcd1", "--data-dir", data,
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"etcd1=http://127.0.0.1:{peer}",
                "--initial-cluster-state", "new", "--initial-cluster-token", self.scope,
                "--log-level", "warn"]
        with open(log_path, "ab") as log:
            self._etcd = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=_die_with_parent(signal.SIGTERM))
        self._wait(lambda: _http_json(f"http://127.0.0.1:{client}/health") is not None, 30,
                   f"etcd did not start; its log says:\n{_tail(log_path)}", alive=self._etcd)

    # -- members -------------------------------------------------------------------------------

    def _member(self, name: str, port: int, api_port: int) -> Member:
        workdir = os.path.join(self.workdir, name)
        os.mkdir(workdir, 0o700)
        member = Member(name, port, api_port, workdir, os.path.join(workdir, "patroni.yml"),
                        os.path.join(self.workdir, f"{name}.log"))
        with open(member.config_path, "w") as handle:
            json.dump(self._config(member), handle, indent=2)  # JSON is YAML
        if self._user is not None:
            for path in (workdir, member.config_path):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        return member

    def _config(self, member: Member) -> dict:
        parameters = {
            "synchronous_commit": "on", "wal_level": "replica", "hot_standby": "on",
            "max_connections": 100, "max_wal_senders": 10, "max_replication_slots": 10,
            "wal_keep_size": "256MB", "wal_log_hints": "on", "fsync": "off",
            # A standby whose primary is gone tries the (new) one every 0.5 s, not every 5 s: in
            # strict synchronous mode no commit is acknowledged until one is streaming again.
            "wal_retrieve_retry_interval": "500ms",
            # Commit times (pg_xact_commit_timestamp): the failover measurements count commits.
            "track_commit_timestamp": "on",
            "listen_addresses": "127.0.0.1",
        }
        return {
            "scope": self.scope, "namespace": "/conveyor/", "name": member.name,
            "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
            "restapi": {"listen": f"127.0.0.1:{member.api_port}", "connect_address": f"127.0.0.1:{member.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "watchdog": {"mode": "off"},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_S, "loop_wait": LOOP_WAIT_S, "retry_timeout": RETRY_TIMEOUT_S,
                    "maximum_lag_on_failover": 1024 * 1024 * 64,
                    "synchronous_mode": self.synchronous, "synchronous_mode_strict": self.synchronous,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": parameters},
                },
                "initdb": [{"encoding": "UTF8"}, "no-locale", {"auth": "trust"}],
                "pg_hba": ["local all all trust", "local replication all trust",
                           "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{member.port}", "connect_address": f"127.0.0.1:{member.port}",
                "data_dir": member.data_dir, "bin_dir": self.bindir,
                "pgpass": os.path.join(member.workdir, "pgpass"),
                "authentication": {"superuser": {"username": "postgres", "password": "postgres"},
                                   "replication": {"username": "replicator", "password": "replicator"},
                                   "rewind": {"username": "postgres", "password": "postgres"}},
                # The socket in the member's own directory, outside the data directory: pg_rewind
                # copies every file of the source's data directory and fails on a socket there.
                "parameters": {"unix_socket_directories": member.workdir},
                # A replica is cloned with a fast checkpoint (pg_basebackup waits for a spread one).
                "basebackup": [{"checkpoint": "fast"}],
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def start(self, name: str) -> None:
        """Start (again) member ``name``'s Patroni; it starts its PostgreSQL."""
        member = self.members[name]
        if member.alive:
            return
        with open(member.log_path, "ab") as log:
            log.write(f"--- start {member.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            member.popen = subprocess.Popen(
                ["patroni", member.config_path], cwd=member.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "LC_ALL": "C.UTF-8"},
                preexec_fn=_die_with_parent(signal.SIGTERM), **self._as_user)  # type: ignore[call-overload]
        member.starts += 1

    def restart(self, name: str) -> None:
        """A dead member comes back (its host rebooted): Patroni again, it rejoins as a replica."""
        self._kill_postgres(self.members[name])  # a leftover of the old one, if any
        self.start(name)

    # -- the state of the cluster --------------------------------------------------------------

    def cluster_state(self) -> list[dict]:
        """Patroni's ``/cluster`` from any member that answers: name, role, state, lag, timeline."""
        for member in self.members.values():
            if member.alive:
                data = _http_json(f"http://127.0.0.1:{member.api_port}/cluster")
                if data is not None:
                    return data.get("members", [])
        return []

    def leader(self) -> Member | None:
        for row in self.cluster_state():
            if row.get("role") == "leader":
                member = self.members.get(row.get("name", ""))
                if member is not None and member.alive:
                    return member
        return None

    def wait_healthy(self, *, timeout: float = 120) -> None:
        """Until every member runs: one leader that accepts writes, the others streaming (one of
        them synchronous, in synchronous mode)."""
        def healthy() -> bool:
            rows = self.cluster_state()
            leaders = [r for r in rows if r.get("role") == "leader" and r.get("state") == "running"]
            streaming = [r for r in rows if r.get("role") in ("replica", "sync_standby")
                         and r.get("state") in ("streaming", "running") and r.get("lag", 1) != "unknown"]
            sync = [r for r in rows if r.get("role") == "sync_standby"]
            if len(leaders) != 1 or len(streaming) != self.size - 1 or (self.synchronous and not sync):
                return False
            leader = self.members[leaders[0]["name"]]
            return self._writable(leader) and self._replicas_streaming(leader) == self.size - 1
        self._wait(healthy, timeout, f"the Patroni cluster did not become healthy: {self.cluster_state()}")

    def _replicas_streaming(self, leader: Member) -> int:
        try:
            with psycopg.connect(leader.url, connect_timeout=2, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()
        except psycopg.Error:
            return 0
        return int(row[0]) if row else 0

    def wait_for_leader(self, *, other_than: str | None = None, timeout: float = 60) -> Member:
        """Until a member (not ``other_than``) leads and accepts writes; returns it."""
        found: list[Member] = []

        def led() -> bool:
            leader = self.leader()
            if leader is None or leader.name == other_than or not self._writable(leader):
                return False
            found[:] = [leader]
            return True
        self._wait(led, timeout, f"no new leader after {timeout:g} s: {self.cluster_state()}")
        return found[0]

    def _role(self, member: Member) -> str | None:
        data = _http_json(f"http://127.0.0.1:{member.api_port}/patroni")
        return data.get("role") if data else None

    @staticmethod
    def _writable(member: Member) -> bool:
        try:
            with psycopg.connect(member.url, connect_timeout=2, autocommit=True) as conn:
                row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    # -- faults --------------------------------------------------------------------------------

    def kill_primary(self) -> Killed:
        """A dead host: SIGKILL the leader's Patroni and its whole PostgreSQL at once."""
        leader = self.leader()
        if leader is None:
            raise DevServicesError(f"no leader to kill: {self.cluster_state()}")
        lsn = None
        with contextlib.suppress(psycopg.Error):
            with psycopg.connect(leader.url, connect_timeout=1, autocommit=True) as conn:
                row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                lsn = row[0] if row else None
        return self.kill(leader.name, lsn=lsn)

    def kill(self, name: str, *, lsn: str | None = None) -> Killed:
        member = self.members[name]
        patroni_pid = member.popen.pid if member.alive and member.popen is not None else None
        postmaster = member.postmaster_pid()
        # Postgres first: Patroni, the instant before it dies, must not see it gone and restart it.
        if patroni_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(patroni_pid, signal.SIGSTOP)
        self._kill_postgres(member)
        at = time.time()
        if patroni_pid is not None and member.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(patroni_pid, signal.SIGKILL)
            member.popen.wait(10)
        return Killed(name, patroni_pid, postmaster, at, lsn)

    def pause_wal_senders(self, *, resume: bool = False) -> list[int]:
        """SIGSTOP (or SIGCONT) the primary's WAL senders: no new WAL leaves it, as behind a slow
        network to the standbys (pausing the standbys' receivers would not do: the kernel keeps
        receiving into their sockets). A synchronous primary's commits wait; an asynchronous
        one's are acknowledged all the same."""
        leader = self.leader()
        postmaster = leader.postmaster_pid() if leader is not None else None
        pids = []
        for pid in _children(postmaster) if postmaster is not None else []:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"walsender" in handle.read():
                        os.kill(pid, signal.SIGCONT if resume else signal.SIGSTOP)
                        pids.append(pid)
        return pids

    @staticmethod
    def _kill_postgres(member: Member) -> None:
        pid = member.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # Patroni starts the postmaster from a helper that called setsid() and exited: the
                # postmaster and every backend share that group, which is nobody else's.
                group = os.getpgid(pid)
                if group != os.getpgid(0):
                    os.killpg(group, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _pid_exists(pid):
                time.sleep(0.01)

    def commits_beyond(self, name: str, timeline: int, fork_lsn: int) -> int | str:
        """COMMIT records in a (dead) member's WAL of ``timeline`` after ``fork_lsn``: transactions
        it committed that the new timeline does not have (read with pg_waldump before it rejoins);
        why not, when pg_waldump could not say."""
        member = self.members[name]
        argv = [os.path.join(self.bindir, "pg_waldump"), "-p", os.path.join(member.data_dir, "pg_wal"),
                "-t", str(timeline), "-s", f"{fork_lsn >> 32:X}/{fork_lsn & 0xFFFFFFFF:X}", "-r", "Transaction"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                  **self._as_user)  # type: ignore[call-overload]
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"pg_waldump: {error}"
        if not done.stdout and done.returncode != 0:
            if any(end in done.stderr for end in ("invalid record length", "could not find a valid record")):
                return 0  # its WAL ends at the fork: the new primary has everything it wrote
            return f"pg_waldump: {done.stderr.strip()[-300:]}"
        return sum(1 for line in done.stdout.splitlines() if "COMMIT" in line)

    # -- helpers -------------------------------------------------------------------------------

    def _wait(self, predicate, timeout: float, message: str, *, alive: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if alive is not None and alive.poll() is not None:
                break
            time.sleep(0.2)
        logs = "".join(f"\n--- {m.name}:\n{_tail(m.log_path)}" for m in self.members.values())
        raise DevServicesError(f"{message}{logs}")

    def _stop_everything(self) -> None:
        for member in self.members.values():
            if member.popen is not None and member.popen.poll() is None:
                _stop_process(member.popen, signal.SIGTERM, grace=15)  # Patroni stops its PostgreSQL
            self._kill_postgres(member)  # whatever is left (a killed member's orphan)
        if self._etcd is not None:
            _stop_process(self._etcd, signal.SIGTERM, grace=5)
            self._etcd = None
        if self.logs_to:
            os.makedirs(self.logs_to, exist_ok=True)
            for name in ["etcd", *self.members]:
                with contextlib.suppress(OSError):
                    shutil.copy(os.path.join(self.workdir, f"{name}.log"), self.logs_to)


def _children(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == parent:
                        pids.append(int(entry))
    return pids


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (not our child: reaped by init soon) counts as gone
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _http_json(url: str, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
