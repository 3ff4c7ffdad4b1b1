"""The chaos harness on a Patroni cluster (issue 17): the same workers, workload and checker,
with PostgreSQL as three Patroni members on one etcd (``conveyor.devservices.patroni``)
instead of one server behind a proxy.

- ``PatroniChaosCluster``: ``Cluster`` with the database replaced by the Patroni cluster.
  Workers, the harness's clients and migrations all use the libpq multi-host URL with
  ``target_session_attrs=read-write``; there is no proxy (the URL *is* the way to the primary),
  so the ``net-*-db`` faults do not apply, and backends are mapped to processes by their own
  client ports.
- the fault ``db-failover`` (``nemesis``): a burst of orders, then kill -9 of the primary's
  PostgreSQL *and* its Patroni (a dead host); Patroni promotes a (synchronous) standby; after
  the hold the dead member's host comes back and rejoins as a replica (pg_rewind).
- ``measure``: after the run, per failover, the time Patroni took (kill → a new primary
  accepts writes), the time to the first order committed after the kill, and the time to
  recover throughput: from the kill to the first one-second window whose committed orders
  are back to 80 % of the 15 s before it (commit times of the order worker's inbox rows:
  ``track_commit_timestamp``, the server's clock, which is this machine's). Also when the
  relay published again under a live lease.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import psycopg

from conveyor.devservices import RestartableRabbitMQ
from conveyor.devservices.patroni import PatroniCluster
from tests.chaos.cluster import DATABASE, Cluster
from tests.chaos.history import History

RECOVERED_SHARE = 0.8
BASELINE_S = 15.0


class _Servers:
    """What ``observe.heal`` asks of ``cluster.postgres``: are they all up, bring them back."""

    def __init__(self, patroni: PatroniCluster) -> None:
        self.patroni = patroni

    @property
    def running(self) -> bool:
        return all(member.alive for member in self.patroni.members.values())

    def start(self) -> None:
        for name, member in self.patroni.members.items():
            if not member.alive:
                self.patroni.restart(name)
        self.patroni.wait_healthy(timeout=120)


class _NoProxy:
    """The workers reach PostgreSQL directly (the multi-host URL): nothing to heal."""

    port = 0

    def heal(self) -> None:
        return None

    def close(self) -> None:
        return None


class PatroniChaosCluster(Cluster):
    def __init__(self, workdir: str, *, processes: dict[str, tuple[str, ...]], env: dict[str, str],
                 history: History, synchronous: bool = True) -> None:
        super().__init__(workdir, processes=processes, env=env, history=history)
        self.synchronous = synchronous
        self.failovers: list[dict] = []

    def __enter__(self) -> "PatroniChaosCluster":
        self._stack = ExitStack()
        try:
            self.broker = self._stack.enter_context(RestartableRabbitMQ())
            # The members live in a temp directory the postgres user can reach (a pytest tmp_path
            # is under a 0700 directory); their logs are copied into the run's directory at the end.
            self.patroni = self._stack.enter_context(
                PatroniCluster(synchronous=self.synchronous, logs_to=os.path.join(self.workdir, "patroni")))
            self.postgres = _Servers(self.patroni)  # type: ignore[assignment]
            with psycopg.connect(self.patroni.database_url, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            self.database_url = self.patroni.url_for(DATABASE)
            self.proxied_database_url = self.database_url  # no proxy: libpq finds the primary
            self.amqp_url = self.broker.amqp_url
            self.db_proxy = _NoProxy()  # type: ignore[assignment]
            from tests.support.tcp_proxy import TcpProxy
            self.broker_proxy, self.proxied_amqp_url = TcpProxy.for_url(self.amqp_url)
            self.proxied_amqp_urls = [self.proxied_amqp_url]  # as Cluster.__enter__ sets them (one node)
            self._stack.callback(self.broker_proxy.close)
            self._stack.callback(self.kill_all)
        except BaseException:
            self._stack.close()
            raise
        return self

    def admin(self) -> psycopg.Connection:
        """A connection to the run's database on whichever member is the primary now."""
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=3)

    # -- who is who, without a proxy: a backend's client port is the worker's own ------------

    def activity(self) -> list[dict]:
        rows = []
        with self.admin() as conn:
            server_port = conn.info.port
            cursor = conn.execute(
                "SELECT a.pid, a.application_name, a.client_port, a.state, a.wait_event_type, a.wait_event, "
                "now() - a.xact_start AS in_transaction, left(a.query, 200) AS query "
                "FROM pg_stat_activity a WHERE a.datname = %s AND a.pid <> pg_backend_pid()", (DATABASE,))
            rows = [dict(zip([c.name for c in cursor.description], row)) for row in cursor.fetchall()]
        for row in rows:
            row["process"] = self._owner_of(row["client_port"], server_port) if row["client_port"] else None
        return rows

    def lock_holders(self) -> list[str]:
        with self.admin() as conn:
            server_port = conn.info.port
            ports = [row[0] for row in conn.execute(
                "SELECT DISTINCT a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s AND a.client_port IS NOT NULL",
                (DATABASE,))]
        names = []
        for port in ports:
            name = self._owner_of(port, server_port)
            if name and name not in names:
                names.append(name)
        return names

    def restart_database(self, *, down_s: float) -> None:
        raise NotImplementedError("on Patroni the database fault is db-failover")

    # -- the failover --------------------------------------------------------------------------

    def failover(self, *, lagging_s: float = 0.0) -> dict:
        """kill -9 the primary (PostgreSQL and Patroni), wait until another member accepts
        writes; the workers are supervised meanwhile. Returns what happened.

        ``lagging_s``: first pause the primary's WAL senders that long (a slow network to the
        standbys), so it dies with WAL no standby has: in synchronous mode those commits were
        waiting and never acknowledged; in asynchronous mode they were acknowledged."""
        self.patroni.wait_healthy(timeout=120)  # the previous failover's member is back
        paused = self.patroni.pause_wal_senders() if lagging_s else []
        try:
            time.sleep(lagging_s)
            killed = self.patroni.kill_primary()  # SIGKILL ends the stopped senders too
        except BaseException:
            self.patroni.pause_wal_senders(resume=True)
            raise
        deadline = time.monotonic() + 60
        new = None
        while new is None and time.monotonic() < deadline:
            self.supervise()
            leader = self.patroni.leader()
            if leader is not None and leader.name != killed.name and self.patroni._writable(leader):
                new = leader
            else:
                time.sleep(0.1)
        if new is None:
            raise RuntimeError(f"no new primary 60 s after killing {killed.name}: {self.patroni.cluster_state()}")
        promoted_s = time.time() - killed.at
        detail = {"killed": killed.name, "promoted": new.name, "failover_s": round(promoted_s, 2),
                  "standbys_lagging_s": lagging_s, "wal_senders_paused": len(paused),
                  "killed_at": round(killed.at, 3), "synchronous": self.synchronous,
                  "relay_back_s": self._relay_back(killed.at)}
        fork = _fork(new.url)
        detail["fork"] = list(fork) if fork else None
        self.failovers.append(detail)
        return detail

    def _relay_back(self, killed_at: float, timeout: float = 60) -> float | None:
        """Seconds from the kill until a relay holds a live lease and has published since."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervise()
            with contextlib.suppress(psycopg.Error):
                with self.admin() as conn:
                    row = conn.execute("SELECT extract(epoch FROM last_sent_at)::float8 FROM relay_lease "
                                       "WHERE expires_at > now() AND last_sent_at IS NOT NULL").fetchone()
                if row and row[0] > killed_at:
                    return round(row[0] - killed_at, 2)
            time.sleep(0.2)
        return None

    def rejoin(self, name: str) -> dict:
        """The dead member's host is back: its Patroni rejoins the cluster as a replica."""
        failover = next((f for f in reversed(self.failovers) if f["killed"] == name), None)
        if failover is not None and failover.get("fork"):
            # What the dead primary had committed that the new timeline does not: in synchronous
            # mode never an acknowledged commit (its client lost the connection waiting for the
            # standby: an `info`, resent or retried); in asynchronous mode possibly acknowledged ones.
            failover["commits_beyond_fork"] = self.patroni.commits_beyond(name, *failover["fork"])
        started = time.monotonic()
        self.patroni.restart(name)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.supervise()
            with contextlib.suppress(Exception):
                self.patroni.wait_healthy(timeout=0.5)
                rejoined = {"member": name, "rejoined_s": round(time.monotonic() - started, 1)}
                for failover in self.failovers:
                    if failover["killed"] == name and "rejoined" not in failover:
                        failover["rejoined"] = (f"{name} rejoined as a replica "
                                                f"{rejoined['rejoined_s']} s after its restart")
                return rejoined
        raise RuntimeError(f"{name} did not rejoin: {self.patroni.cluster_state()}")


def _fork(url: str) -> tuple[int, int] | None:
    """The timeline the new primary left and where (bytes): the last line of its own timeline's
    history file, written at promotion (Patroni's /history lags behind it)."""
    with contextlib.suppress(psycopg.Error, IndexError, ValueError):
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)").fetchone()
            text = conn.execute("SELECT pg_read_file('pg_wal/' || %s || '.history')", (row[0],)).fetchone()[0]
        parent, lsn = [line.split() for line in text.splitlines() if line.strip()][-1][:2]
        high, low = lsn.split("/")
        return int(parent), (int(high, 16) << 32) + int(low, 16)
    return None


@dataclass(frozen=True)
class Recovery:
    first_order_s: float | None      # kill -> the first order committed after it
    throughput_s: float | None       # kill -> the first 1 s window at >= 80 % of the baseline
    baseline_per_s: float


def measure(cluster: PatroniChaosCluster) -> list[dict]:
    """Per failover: Patroni's time, the relay's, the first order after, the throughput's recovery."""
    with cluster.admin() as conn:  # each order.created's inbox row commits with its order
        stamps = sorted(row[0] for row in conn.execute(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM inbox "
            "WHERE handler = 'orders' AND pg_xact_commit_timestamp(xmin) IS NOT NULL"))
    results = []
    for failover in cluster.failovers:
        recovery = recovery_after(stamps, failover["killed_at"])
        results.append({**failover, "first_order_s": recovery.first_order_s,
                        "throughput_recovered_s": recovery.throughput_s,
                        "baseline_orders_per_s": round(recovery.baseline_per_s, 1)})
    return results


def recovery_after(stamps: list[float], killed_at: float, *,
                   share: float = RECOVERED_SHARE, baseline_s: float = BASELINE_S, step: float = 0.1) -> Recovery:
    """From sorted commit times (Unix seconds): the baseline rate over ``baseline_s`` before the
    kill, the first commit after it, and how long after the kill the commits of the last second
    are first back to ``share`` of the baseline (the end of the first such one-second window)."""
    before = bisect.bisect_left(stamps, killed_at) - bisect.bisect_left(stamps, killed_at - baseline_s)
    baseline = before / baseline_s
    after = bisect.bisect_right(stamps, killed_at)
    first = stamps[after] if after < len(stamps) else None
    throughput = None
    if baseline > 0 and first is not None:
        end = max(first, killed_at + 1.0)
        while end <= stamps[-1] + 1.0:
            if bisect.bisect_left(stamps, end) - bisect.bisect_left(stamps, end - 1.0) >= share * baseline:
                throughput = round(end - killed_at, 1)
                break
            end += step
    return Recovery(round(first - killed_at, 2) if first is not None else None, throughput, baseline)
