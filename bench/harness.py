"""Benchmark plumbing: a fresh database and vhost, seeding, publishing without waiting,
worker processes with their CPU time and peak RSS read from /proc, and percentiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pika
import psycopg

from conveyor import devservices
from conveyor.db.connection import connect
from conveyor.db.migrate import ensure_partitions, migrate
from conveyor.db.stock import StockRepository
from conveyor.workers.bootstrap import declare_topology
from conveyor.workers.config import load_settings
from conveyor.workers.runtime.processes import stop_all

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Stage:
    database_url: str
    amqp_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def prepare(self, stock: dict[str, int]) -> None:
        migrate(self.database_url)
        ensure_partitions(self.database_url)
        declare_topology(load_settings(database_url=self.database_url, amqp_url=self.amqp_url))
        self.seed(stock)

    def seed(self, stock: dict[str, int]) -> None:
        with connect(self.database_url) as conn, conn.transaction():
            repo = StockRepository(conn)
            for sku, units in stock.items():
                repo.set_on_hand("default", sku, units, price="1.00")

    def start(self, argv: list[str], *, count: int, extra_env: dict | None = None) -> None:
        env = {**os.environ, "CONVEYOR_DATABASE_URL": self.database_url, "CONVEYOR_AMQP_URL": self.amqp_url,
               "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "WARNING", **(extra_env or {})}
        for _ in range(count):
            self.processes.append(subprocess.Popen([sys.executable, *argv], env=env, cwd=ROOT,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def cpu_seconds(self) -> float:
        """CPU seconds the running processes used so far (user + system)."""
        total = 0.0
        for process in self.processes:
            with open(f"/proc/{process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total

    def wait_consuming(self, queue: str = "conveyor.orders", *, timeout: float = 60) -> None:
        """Until every started process consumes ``queue``: start-up (imports, connecting,
        declaring) is not part of what a benchmark measures."""
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            channel = connection.channel()
            deadline = time.monotonic() + timeout
            while channel.queue_declare(queue, passive=True).method.consumer_count < len(self.processes):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not start consuming {queue} within {timeout}s")
                time.sleep(0.01)
        finally:
            connection.close()

    def usage(self) -> dict:
        """CPU seconds and peak RSS of the running processes (read before stopping them)."""
        cpu, peaks = 0.0, []
        for process in self.processes:
            with open(f"/proc/{process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            with open(f"/proc/{process.pid}/status") as f:
                peaks += [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")]
        return {"cpu_seconds": round(cpu, 2), "peak_rss_mb": round(max(peaks), 1) if peaks else None}

    def stop(self) -> None:
        stop_all(self.processes, timeout=60)


@contextmanager
def stage(services: devservices.Services):
    with devservices.fresh_database(services, prefix="conveyor_bench") as database_url, \
            devservices.fresh_vhost(services, prefix="conveyor-bench") as amqp_url:
        current = Stage(database_url, amqp_url)
        try:
            yield current
        finally:
            current.stop()


def order(skus: list[str], *, quantity: int = 1) -> dict:
    return {"order_id": str(uuid.uuid4()), "customer_id": "bench", "currency": "EUR",
            "items": [{"sku": sku, "quantity": quantity, "unit_price": "1.00"} for sku in skus],
            "placed_at": datetime.now(timezone.utc).isoformat()}


def publish(channel, body: dict) -> None:
    properties = pika.BasicProperties(message_id=str(uuid.uuid4()), content_type="application/json",
                                      type="order.created", delivery_mode=2)
    channel.basic_publish("orders", "order.created", json.dumps(body).encode(), properties)


def preload(amqp_url: str, orders: list[dict]) -> None:
    """Publish everything (no per-message confirm), then make sure the queue holds it all."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for body in orders:
        publish(channel, body)
    deadline = time.monotonic() + 60
    while channel.queue_declare("conveyor.orders", passive=True).method.message_count < len(orders):
        if time.monotonic() > deadline:
            raise RuntimeError("the broker did not take every benchmark order")
        time.sleep(0.1)
    connection.close()


def process_cpu() -> Iterator[tuple[int, str, int, float]]:
    """(pid, name, parent pid, CPU seconds including exited children) of every process."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        yield int(pid), name, int(fields[1]), sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # u+s+cu+cs


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this machine's PostgreSQL processes (with the exited
    backends, which the postmaster's children times hold) and RabbitMQ's beam.smp. The
    difference over a measurement tells where the two cores went."""
    totals = {"postgres": 0.0, "rabbitmq": 0.0}
    for _pid, name, _parent, seconds in process_cpu():
        group = "postgres" if name in ("postgres", "postmaster") else "rabbitmq" if name.startswith("beam") else None
        if group:
            totals[group] += seconds
    return totals


def decided(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM orders").fetchone()[0]


def wait_decided(database_url: str, total: int, *, timeout: float = 600) -> float:
    """Seconds until `total` orders are decided (polled every 50 ms on one connection, so the
    polling costs the server a count, not a backend start, each time)."""
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while (done := decided(conn)) < total:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"only {done}/{total} orders decided after {timeout}s")
            time.sleep(0.05)
    return time.monotonic() - started


def verify(database_url: str, total: int) -> list[str]:
    """Every order decided exactly once, no oversell, no drift; returns the problems found."""
    from conveyor.db.reconcile import run_checks

    problems = []
    with psycopg.connect(database_url) as conn:
        orders, distinct = conn.execute("SELECT count(*), count(DISTINCT order_id) FROM orders").fetchone()
        oversold = conn.execute("SELECT count(*) FROM stock_levels WHERE reserved > on_hand").fetchone()[0]
        drift = {k: len(v) for k, v in run_checks(conn).items() if v}
    if orders != total or distinct != total:
        problems.append(f"{orders} orders ({distinct} distinct) for {total} published")
    if oversold:
        problems.append(f"{oversold} SKUs oversold")
    if drift:
        problems.append(f"reconcile drift {drift}")
    return problems


def percentiles(values: list[float]) -> dict:
    from conveyor.workers.demo.report import percentiles as demo_percentiles

    return {k: v for k, v in demo_percentiles(values).items() if k != "max"}
