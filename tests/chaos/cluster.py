"""The system under test: a PostgreSQL and a RabbitMQ of our own (``conveyor.devservices``,
so they may be crashed and restarted: never the machine's servers), a TCP proxy in front of
each, and the worker processes (``python -m conveyor run ...``), which reach the servers
only through the proxies. The harness itself (the workload, the checker) talks to the
servers directly, like the shop and the operators would.

With ``brokers=3`` the broker is a RabbitMQ cluster of three nodes (``RabbitCluster``): a
proxy in front of each node's client port, the workers given all three (``CONVEYOR_AMQP_URLS``)
and ``CONVEYOR_QUORUM_REPLICAS=3``; the harness's own clients fail over between the nodes too.

Like a process manager, ``supervise()`` restarts a worker process that exited (after the
delay the nemesis asked for); an exit the nemesis did not cause is recorded as a crash.
Processes are started from the calling thread and die with it (parent-death signal): call
``supervise()``, ``start()`` and the server restarts from the run's main thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

import pika
import psycopg

from conveyor.devservices import RestartablePostgres, RestartableRabbitMQ, database_url_for
from conveyor.devservices.rabbitmq_cluster import RabbitCluster
from tests.chaos.history import History
from tests.support.tcp_proxy import TcpProxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATABASE = "conveyor"
# application_name patterns (SQL LIKE) of the backends: processors are conveyor-<worker>, the
# expirer's pool conveyor-workers, the relay conveyor-relay and conveyor-relay-listen.
WORKER_BACKENDS = "conveyor-%"
RELAY_BACKENDS = "conveyor-relay%"
RELAY_LISTENER = "conveyor-relay-listen"
NORMAL_WATERMARK = "0.4"


@dataclass
class WorkerProcess:
    name: str
    workers: tuple[str, ...]
    log_path: str
    popen: subprocess.Popen | None = None
    starts: int = 0
    paused: bool = False
    restart_at: float | None = None     # when supervise() may start it again
    expected_exit: bool = False         # the nemesis killed it, or we are stopping it

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None


class ClusterBroker:
    """The three-node cluster where the single-node harness expects one broker: ``running``
    (every node), ``start()`` (the nodes that are down), ``rabbitmqctl`` (a node that runs)."""

    def __init__(self, rabbit: RabbitCluster) -> None:
        self.rabbit = rabbit

    @property
    def running(self) -> bool:
        return self.rabbit.running and not self.rabbit.partitioned

    def start(self) -> None:
        if self.rabbit.partitioned:
            self.rabbit.heal()
        self.rabbit.start_missing()

    def stop(self) -> None:
        raise NotImplementedError("a whole-cluster stop is not a fault of the cluster plan")

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        return self.rabbit.rabbitmqctl(*args, timeout=timeout)

    def each_node(self, *args: str) -> None:
        for i, node in enumerate(self.rabbit.nodes):
            if node.running and i not in self.rabbit.partitioned:
                node.rabbitmqctl(*args)


class ProxyGroup:
    """The proxies in front of every node, driven as one (the broker's network faults)."""

    def __init__(self, proxies: list[TcpProxy]) -> None:
        self.proxies = proxies

    def __setattr__(self, name: str, value) -> None:
        if name in ("delay_s", "hold", "blackhole", "refuse"):
            for proxy in self.proxies:
                setattr(proxy, name, value)
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name: str):
        return getattr(self.proxies[0], name)

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def reset_all(self) -> int:
        return sum(proxy.reset_all() for proxy in self.proxies)

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()


def connect_any(urls: list[str], params) -> pika.BlockingConnection:
    """A connection to the first of ``urls`` that answers (``params(url)`` builds each)."""
    return pika.BlockingConnection([params(url) for url in urls])


class Cluster:
    def __init__(self, workdir: str, *, processes: dict[str, tuple[str, ...]], env: dict[str, str],
                 history: History, brokers: int = 1) -> None:
        self.workdir = workdir
        self.env = env
        self.history = history
        self.brokers = brokers
        self.rabbit: RabbitCluster | None = None
        self.processes = {name: WorkerProcess(name, workers, os.path.join(workdir, f"{name}.log"))
                          for name, workers in processes.items()}
        self._stack = ExitStack()

    # -- servers -------------------------------------------------------------------------------

    def __enter__(self) -> "Cluster":
        try:
            if self.brokers == 1:
                self.broker = self._stack.enter_context(RestartableRabbitMQ())
            else:
                self.rabbit = self._stack.enter_context(RabbitCluster(self.brokers))
                self.broker = ClusterBroker(self.rabbit)
            self.postgres = self._stack.enter_context(RestartablePostgres())
            with psycopg.connect(self.postgres.database_url, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            self.database_url = database_url_for(self.postgres.database_url, DATABASE)
            self.amqp_url = self.rabbit.amqp_url if self.rabbit else self.broker.amqp_url
            self.db_proxy, self.proxied_database_url = TcpProxy.for_url(self.database_url)
            proxies = [TcpProxy.for_url(url) for url in self.amqp_urls]
            self.proxied_amqp_urls = [url for _, url in proxies]
            self.proxied_amqp_url = self.proxied_amqp_urls[0]
            self.broker_proxy = proxies[0][0] if self.brokers == 1 else ProxyGroup([p for p, _ in proxies])
            self._stack.callback(self.db_proxy.close)
            self._stack.callback(self.broker_proxy.close)
            self._stack.callback(self.kill_all)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def restart_broker(self) -> None:
        self.broker.stop()
        self.broker.start()

    def restart_database(self, *, down_s: float) -> None:
        self.postgres.stop(mode="immediate")
        time.sleep(down_s)
        self.postgres.start()

    def memory_alarm(self, on: bool) -> None:
        args = ("set_vm_memory_high_watermark", "0.0000001" if on else NORMAL_WATERMARK)
        if isinstance(self.broker, ClusterBroker):
            self.broker.each_node(*args)
        else:
            self.broker.rabbitmqctl(*args)

    def close_broker_connections(self) -> None:
        args = ("close_all_connections", "chaos: close_all_connections")
        if isinstance(self.broker, ClusterBroker):
            self.broker.each_node(*args)
        else:
            self.broker.rabbitmqctl(*args)

    def terminate_backends(self, like: str, *, not_like: str | None = None) -> int:
        """pg_terminate_backend of the run's backends whose application_name is LIKE ``like``."""
        query = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE datname = %s AND application_name LIKE %s")
        params = [DATABASE, like]
        if not_like:
            query += " AND application_name NOT LIKE %s"
            params.append(not_like)
        with self.admin() as conn:
            return conn.execute(query, params).fetchone()[0]

    def admin(self) -> psycopg.Connection:
        """A direct connection to the run's database (not through the proxy)."""
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=3)

    def activity(self) -> list[dict]:
        """What every backend of the run's database is doing and which locks it holds (for a
        run that did not go quiet)."""
        with self.admin() as conn:
            cursor = conn.execute(
                "SELECT a.pid, a.application_name, a.client_port, a.state, a.wait_event_type, a.wait_event, "
                "now() - a.xact_start AS in_transaction, left(a.query, 200) AS query, "
                "(SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted) "
                "AS advisory_locks FROM pg_stat_activity a WHERE a.datname = %s AND a.pid <> pg_backend_pid()",
                (DATABASE,))
            rows = [dict(zip([c.name for c in cursor.description], row)) for row in cursor.fetchall()]
        for row in rows:
            origin = self.db_proxy.origin_port(row["client_port"]) if row["client_port"] else None
            row["process"] = self._owner_of(origin, self.db_proxy.port) if origin else None
        return rows

    @property
    def amqp_urls(self) -> list[str]:
        """Every broker node the harness's clients may use, directly (not through a proxy)."""
        return self.rabbit.amqp_urls if self.rabbit else [self.amqp_url]

    def connection(self) -> pika.BlockingConnection:
        """A direct connection (not through a proxy) to the broker, or the first node that answers."""
        return connect_any(self.amqp_urls, pika.URLParameters)

    def channel(self) -> tuple[pika.BlockingConnection, object]:
        connection = self.connection()
        return connection, connection.channel()

    # -- worker processes ------------------------------------------------------------------------

    def start(self, name: str) -> None:
        proc = self.processes[name]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}, **self.env,
               "CONVEYOR_DATABASE_URL": self.proxied_database_url, "CONVEYOR_AMQP_URL": self.proxied_amqp_url,
               "PYTHONFAULTHANDLER": "1"}
        if self.brokers > 1:
            env["CONVEYOR_AMQP_URLS"] = ",".join(self.proxied_amqp_urls)
            env["CONVEYOR_QUORUM_REPLICAS"] = str(self.brokers)
        with open(proc.log_path, "ab") as log:
            log.write(f"--- start {proc.starts + 1} at {self.history.elapsed():.2f}s\n".encode())
            log.flush()
            proc.popen = subprocess.Popen([sys.executable, "-m", "conveyor", "run", *proc.workers], cwd=ROOT,
                                          env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          preexec_fn=_die_with_parent)
        proc.starts += 1
        proc.paused, proc.restart_at, proc.expected_exit = False, None, False

    def start_all(self) -> None:
        for name in self.processes:
            self.start(name)

    def kill(self, name: str, *, restart_after: float) -> int | None:
        proc = self.processes[name]
        pid = proc.pid
        if pid is None:
            return None
        proc.expected_exit = True
        proc.restart_at = time.monotonic() + restart_after
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        proc.popen.wait(10)
        return pid

    def pause(self, name: str) -> int | None:
        proc = self.processes[name]
        if proc.pid is not None and not proc.paused:
            os.kill(proc.pid, signal.SIGSTOP)
            proc.paused = True
            return proc.pid
        return None

    def resume(self, name: str) -> None:
        proc = self.processes[name]
        if proc.pid is not None and proc.paused:
            os.kill(proc.pid, signal.SIGCONT)
        proc.paused = False

    def supervise(self) -> None:
        """Restart processes that exited; record the exits nobody asked for."""
        now = time.monotonic()
        for proc in self.processes.values():
            if proc.popen is None or proc.popen.poll() is None:
                continue
            code = proc.popen.returncode
            if not proc.expected_exit:
                self.history.note("cluster", "crash", process=proc.name, code=code, log=proc.log_path)
                proc.expected_exit, proc.restart_at = True, now + 1.0
            if proc.restart_at is not None and now >= proc.restart_at:
                self.history.note("cluster", "restart", process=proc.name, after_exit=code)
                self.start(proc.name)

    def stop_all(self, *, timeout: float = 40) -> dict[str, int | None]:
        """SIGTERM every process (a clean stop must exit 0); returns the exit codes."""
        for proc in self.processes.values():
            self.resume(proc.name)
            if proc.pid is not None:
                proc.expected_exit = True
                proc.popen.send_signal(signal.SIGTERM)
        codes = {}
        for proc in self.processes.values():
            if proc.popen is None:
                codes[proc.name] = None
                continue
            try:
                codes[proc.name] = proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.dump_stacks(proc.name)
                codes[proc.name] = proc.popen.wait(10)
            proc.restart_at = None
        return codes

    def dump_stacks(self, name: str) -> None:
        """SIGABRT: the process writes every thread's stack to its log (PYTHONFAULTHANDLER) and dies."""
        proc = self.processes[name]
        if proc.pid is not None:
            proc.expected_exit, proc.restart_at = True, None
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGABRT)
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()

    def kill_all(self) -> None:
        for proc in self.processes.values():
            if proc.pid is not None:
                proc.expected_exit, proc.restart_at = True, None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait(10)

    # -- who is who ----------------------------------------------------------------------------

    def lock_holders(self) -> list[str]:
        """Worker processes whose database backend holds a stock lock right now."""
        with self.admin() as conn:
            ports = [row[0] for row in conn.execute(
                "SELECT DISTINCT a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s AND a.client_port IS NOT NULL",
                (DATABASE,))]
        names = []
        for port in ports:
            origin = self.db_proxy.origin_port(port)
            name = self._owner_of(origin, self.db_proxy.port) if origin else None
            if name and name not in names:
                names.append(name)
        return names

    def relay_leader(self) -> str | None:
        """The process whose relay holds a live lease (its holder is host:pid:tag)."""
        with self.admin() as conn:
            row = conn.execute("SELECT holder FROM relay_lease WHERE expires_at > now()").fetchone()
        if not row or not row[0]:
            return None
        pid = int(row[0].split(":")[1])
        return next((p.name for p in self.processes.values() if p.pid == pid), None)

    def _owner_of(self, local_port: int, remote_port: int) -> str | None:
        inode = _socket_inode(local_port, remote_port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for proc in self.processes.values():
            pid = proc.pid
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return proc.name
        return None


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the loopback TCP socket local_port -> remote_port (/proc/net/tcp)."""
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
                return inode
    return None


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the worker if the thread that started it (the run's main thread) dies."""
    _PRCTL(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
