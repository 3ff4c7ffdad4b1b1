"""The drill's system: the chaos harness's ``Cluster`` (worker processes, supervision,
``admin()``), but on an ``ArchivingPostgres`` (WAL archived by pgBackRest) and a broker vhost
of its own, with no fault proxies: the drill's disaster is the database's, not the network's.

``prepare`` migrates (``conveyor db migrate``), declares the topology and the partners' queues
and loads the chaos catalogue's stock. ``Heartbeat`` commits a timestamp every 0.1 s in a
database of its own (``drill``, outside Conveyor's checksums), so the WAL always holds recent
commits and a restore shows how close to its target it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import ExitStack
from datetime import datetime

import psycopg

from conveyor.devservices import database_url_for
from tests.chaos.clients import INVENTORY_PARTNER, ORDER_EVENTS_PARTNER, TENANT
from tests.chaos.cluster import DATABASE, ROOT, Cluster
from tests.chaos.history import History
from tests.chaos.plans import Catalogue
from tests.drill.server import ArchivingPostgres

HEARTBEAT_DATABASE = "drill"


class DrillCluster(Cluster):
    def __init__(self, workdir: str, *, server: ArchivingPostgres, amqp_url: str,
                 processes: dict[str, tuple[str, ...]], env: dict[str, str], history: History) -> None:
        super().__init__(workdir, processes=processes, env=env, history=history)
        self.server = server
        self.amqp_url = amqp_url

    def __enter__(self) -> "DrillCluster":
        self._stack = ExitStack()
        self.postgres = self.server.postgres
        with psycopg.connect(self.postgres.database_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
            conn.execute(f"CREATE DATABASE {HEARTBEAT_DATABASE}")
        self.database_url = database_url_for(self.postgres.database_url, DATABASE)
        self.heartbeat_url = database_url_for(self.postgres.database_url, HEARTBEAT_DATABASE)
        # No proxies: the workers reach the servers directly (the restored server takes the port).
        self.proxied_database_url, self.proxied_amqp_url = self.database_url, self.amqp_url
        self._stack.callback(self.kill_all)
        return self


def prepare(cluster: DrillCluster, catalogue: Catalogue, *, retry_delays: tuple[int, ...],
            delivery_limit: int) -> None:
    """Schema (``conveyor db migrate``), topology, the partners' queues, the stock."""
    from conveyor.workers.bootstrap import declare_topology
    from conveyor.workers.config import Settings

    env = {**os.environ, "CONVEYOR_DATABASE_URL": cluster.database_url, "CONVEYOR_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "conveyor", "db", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"conveyor db migrate exited {done.returncode}: {done.stderr[-800:]}")
    declare_topology(Settings(amqp_url=cluster.amqp_url, retry_delays=retry_delays, delivery_limit=delivery_limit))
    connection, channel = cluster.channel()
    try:  # the partners (no shop: nobody pays, orders end REJECTED or EXPIRED)
        quorum = {"x-queue-type": "quorum"}
        channel.queue_declare(INVENTORY_PARTNER, durable=True, arguments=quorum)
        channel.queue_bind(INVENTORY_PARTNER, "inventory", routing_key="stock.changed.#")
        channel.queue_declare(ORDER_EVENTS_PARTNER, durable=True, arguments=quorum)
        channel.queue_bind(ORDER_EVENTS_PARTNER, "order-events", routing_key="order.#")
    finally:
        connection.close()
    with cluster.admin() as conn, conn.transaction(), conn.cursor() as cur:
        skus = list(catalogue.initial)
        cur.executemany("INSERT INTO products (tenant_id, sku, price) VALUES (%s, %s, %s)",
                        [(TENANT, s, catalogue.prices[s]) for s in skus])
        cur.executemany("INSERT INTO stock_levels (tenant_id, sku, on_hand, last_cause) "
                        "VALUES (%s, %s, %s, 'drill-seed')", [(TENANT, s, catalogue.initial[s]) for s in skus])


class Heartbeat(threading.Thread):
    """A commit every ``interval`` seconds in the ``drill`` database; survives outages."""

    def __init__(self, url: str, *, interval: float = 0.1) -> None:
        super().__init__(name="drill-heartbeat", daemon=True)
        self.url = url
        self.interval = interval
        self.stop = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.stop.wait(self.interval):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                    conn.execute("CREATE TABLE IF NOT EXISTS heartbeat (at timestamptz NOT NULL)")
                conn.execute("INSERT INTO heartbeat (at) VALUES (clock_timestamp())")
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                self.stop.wait(0.5)
        if conn is not None:
            conn.close()


def newest_heartbeat(url: str, *, before: datetime) -> datetime | None:
    """The newest heartbeat committed before ``before`` (the disaster: the restored server
    commits new heartbeats as soon as it accepts them)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT max(at) FROM heartbeat WHERE at < %s", (before,)).fetchone()
    return row[0] if row else None
