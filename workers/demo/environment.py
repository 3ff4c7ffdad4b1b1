"""Where the demo runs: its servers, its own database and vhost, and the worker processes."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pika

from conveyor import devservices
from conveyor.db.connection import connect
from conveyor.db.crypto import new_key_file
from conveyor.db.migrate import ensure_partitions, migrate
from conveyor.db.stock import StockRepository
from conveyor.workers.bootstrap import declare_topology
from conveyor.workers.config import load_settings
from conveyor.workers.runtime.processes import stop_all


@dataclass
class DemoEnvironment:
    database_url: str
    amqp_url: str
    log_dir: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    workers_started_at: float = 0.0

    @property
    def key_file(self) -> str:
        """The demo's own PII key file (CONVEYOR_PII_KEY_FILE), beside its logs."""
        return os.path.join(self.log_dir, "pii-keys.json")

    @classmethod
    @contextmanager
    def open(cls, args: argparse.Namespace) -> Iterator["DemoEnvironment"]:
        with ExitStack() as stack:
            database_url, amqp_url = _locate(args, stack)
            env = cls(database_url, amqp_url, tempfile.mkdtemp(prefix="conveyor-demo-logs-"))
            new_key_file(env.key_file, "demo-1")  # the customers' data is sealed with it
            stack.callback(env.stop_workers)
            env.prepare()
            yield env

    def prepare(self) -> None:
        migrate(self.database_url)
        ensure_partitions(self.database_url)
        declare_topology(load_settings(database_url=self.database_url, amqp_url=self.amqp_url))

    def seed(self, catalogue) -> None:
        with connect(self.database_url) as conn, conn.transaction():
            repo = StockRepository(conn)
            for sku in catalogue.skus:
                repo.set_on_hand("default", sku, catalogue.stock,
                                 price=f"{catalogue.price_cents[sku] / 100:.2f}")
        _say(f"seeded {len(catalogue.skus)} SKUs with {catalogue.stock} units each "
             f"({len(catalogue.hot_skus)} hot)")

    def start_workers(self, *, processes: int, reservation_ttl: float) -> None:
        env = {**os.environ, "CONVEYOR_DATABASE_URL": self.database_url,
               "CONVEYOR_AMQP_URL": self.amqp_url, "CONVEYOR_LOG_FORMAT": "json",
               "CONVEYOR_RESERVATION_TTL": str(reservation_ttl), "CONVEYOR_PII_KEY_FILE": self.key_file}
        # The order workers as one group behind one endpoint, the rest in one process: each
        # serves /metrics, /healthz and /readyz on a free port (docs/operations.md).
        commands = [(["run", "orders", "--processes", str(processes)], "orders"),
                    (["run", "payments", "shipments", "relay", "expirer"], "lifecycle")]
        self.metrics_urls = []
        for command, name in commands:
            port = _free_port()
            self.metrics_urls.append(f"http://127.0.0.1:{port}/metrics")
            log = open(os.path.join(self.log_dir, f"{name}.log"), "wb")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "conveyor", *command], stdout=log, stderr=log,
                env={**env, "CONVEYOR_HTTP_PORT": str(port), "CONVEYOR_HTTP_HOST": "127.0.0.1"}))
        self._wait_for_consumers("conveyor.orders", processes)
        self.workers_started_at = time.monotonic()
        _say(f"started {processes} order worker process(es) and one for payments, shipments, "
             f"relay and expirer; logs in {self.log_dir}")
        _say(f"metrics: {'  '.join(self.metrics_urls)} (/healthz, /readyz beside them)")

    def stop_workers(self) -> None:
        stop_all(self.processes, timeout=30)

    def _wait_for_consumers(self, queue: str, count: int, timeout: float = 30) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            channel = connection.channel()
            deadline = time.monotonic() + timeout
            while channel.queue_declare(queue, passive=True).method.consumer_count < count:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"workers did not start; see the logs in {self.log_dir}")
                time.sleep(0.1)
        finally:
            connection.close()


def _locate(args: argparse.Namespace, stack: ExitStack) -> tuple[str, str]:
    if args.use_env:
        settings = args.settings
        return settings.database_url, settings.amqp_url
    services = stack.enter_context(devservices.provide_services(log=_say))
    if args.keep:
        return (devservices.create_database(services, prefix="conveyor_demo"),
                devservices.create_vhost(services, prefix="conveyor-demo"))
    database_url = stack.enter_context(devservices.fresh_database(services, prefix="conveyor_demo"))
    amqp_url = stack.enter_context(devservices.fresh_vhost(services, prefix="conveyor-demo"))
    return database_url, amqp_url


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
