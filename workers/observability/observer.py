"""The figures a scrape shows that no message loop counts: read every few seconds
(``CONVEYOR_BROKER_VIEW_INTERVAL``) on connections of their own, cached in gauges, so a
scrape never waits for RabbitMQ or PostgreSQL and answers at once during an outage.

- the broker's view of every Conveyor queue (work queues, retry tiers, DLQs): messages and
  consumers, read with passive declares; ``conveyor_broker_view_age_seconds`` grows while the
  broker cannot be read (the figures are then stale, and say so);
- the outbox: pending rows and the oldest row's age per stream;
- the oldest transaction holding the xmin horizon back (docs/performance.md: it slows stock
  and outbox work down while it lasts);
- the connection pool of the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from conveyor.db import views
from conveyor.db.connection import Connection, connect
from conveyor.db.errors import DatabaseError
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability import metrics
from conveyor.workers.observability.health import Health
from conveyor.workers.runtime import amqp, topology
from conveyor.workers.runtime.spec import WorkerSpec

log = get_logger("conveyor.observer")


def conveyor_queues(specs: Iterable[WorkerSpec], retry_delays: Iterable[int]) -> list[str]:
    """Every queue Conveyor declares for these workers: work queue, retry tiers, DLQ."""
    delays = sorted(set(retry_delays))
    return [name for spec in specs for name in (
        spec.queue, *(topology.retry_queue_name(spec.queue, d) for d in delays), topology.dlq_name(spec.queue))]


class Observer:
    def __init__(self, settings: Settings, *, stop: threading.Event, health: Health, queues: list[str],
                 pool=None) -> None:
        self.settings, self.stop, self.health, self.queues, self.pool = settings, stop, health, queues, pool
        self.interval = settings.broker_view_interval
        self._broker = None
        self._db: Connection | None = None
        self._broker_read_at = time.monotonic()

    def run(self) -> None:
        try:
            while True:
                self.health.beat("observer")
                self.tick()
                if self.stop.wait(self.interval):
                    return
        finally:
            self.health.forget("observer")
            self._close()

    def tick(self) -> None:
        self._read_broker()
        self._read_database()
        self._read_pool()

    # -- RabbitMQ ----------------------------------------------------------------------------

    def _read_broker(self) -> None:
        try:
            if self._broker is None or not self._broker.is_open:
                self._broker = amqp.connect(self.settings, name="observer")
            for name, (messages, consumers) in amqp.queue_figures(self._broker, self.queues).items():
                metrics.QUEUE_MESSAGES.labels(name).set(messages)
                metrics.QUEUE_CONSUMERS.labels(name).set(consumers)
            self._broker_read_at = time.monotonic()
        except amqp.CONNECTION_ERRORS as error:
            log.debug("broker_view_failed", error=repr(error)[:200])
            self._close_broker()
        metrics.BROKER_VIEW_AGE.set(time.monotonic() - self._broker_read_at)

    # -- PostgreSQL --------------------------------------------------------------------------

    def _read_database(self) -> None:
        try:
            if self._db is None or self._db.closed or self._db.broken:
                self._db = connect(self.settings.database_url, application_name="conveyor-observer",
                                   statement_timeout_ms=5_000, lock_timeout_ms=1_000)
            outbox = views.outbox_streams(self._db)
            metrics.OLDEST_TRANSACTION.set(views.oldest_transaction_seconds(self._db))
        except DatabaseError as error:
            log.debug("database_view_failed", error=str(error)[:200])
            self._close_db()
            return
        for stream, (pending, lag) in outbox.items():
            metrics.OUTBOX_PENDING.labels(stream).set(pending)
            metrics.OUTBOX_LAG.labels(stream).set(lag)

    def _read_pool(self) -> None:
        if self.pool is None:
            return
        stats = self.pool.get_stats()
        name = self.pool.name
        metrics.DB_POOL_SIZE.labels(name).set(stats.get("pool_size", 0))
        metrics.DB_POOL_AVAILABLE.labels(name).set(stats.get("pool_available", 0))
        metrics.DB_POOL_WAITING.labels(name).set(stats.get("requests_waiting", 0))

    def _close(self) -> None:
        self._close_broker()
        self._close_db()

    def _close_broker(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None and broker.is_open:
            try:
                broker.close()
            except amqp.CONNECTION_ERRORS:
                pass

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None and not db.closed:
            db.close()
