"""The outbox relay: publishes outbox rows to RabbitMQ with confirms, marks them sent after.

The outbox table is the truth; NOTIFY on ``conveyor_outbox`` is only a wake-up. The relay
LISTENs on its own autocommit connection, wakes on a notification or a poll timeout,
drains the backlog after every (re)connect, and publishes with ``mandatory`` and publisher
confirms; a row is marked sent only after its confirm, so a crash in between republishes
it with the same ``message_id`` (at least once).
"""

from __future__ import annotations

import threading
import time

import pika
import psycopg

from db.connection import connect
from db.outbox import Outbox, OutboxRow
from workers.config import Settings
from workers.logging import get_logger
from workers.runtime import amqp, topology
from workers.runtime.consumer import reconnect_delay

log = get_logger("conveyor.relay")

CHANNEL = "conveyor_outbox"


class OutboxRelay:
    def __init__(self, settings: Settings, *, stop: threading.Event, batch_size: int = 200,
                 poll_interval: float = 1.0, keep_sent_seconds: float = 3600.0) -> None:
        self.settings = settings
        self.stop = stop
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.keep_sent_seconds = keep_sent_seconds
        self.published = 0
        self.connections = 0
        self._last_purge = 0.0

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            started = self.connections
            try:
                self._serve()
            except (psycopg.OperationalError, *amqp.CONNECTION_ERRORS) as error:
                failures = 1 if self.connections != started else failures + 1
                delay = reconnect_delay(failures)
                log.warning("relay_connection_lost", error=repr(error)[:300], retry_in_s=round(delay, 2))
                self.stop.wait(delay)

    def _serve(self) -> None:
        kwargs = {"lock_timeout_ms": self.settings.lock_timeout_ms,
                  "statement_timeout_ms": self.settings.statement_timeout_ms}
        with connect(self.settings.database_url, application_name="conveyor-relay-listen", **kwargs) as listener, \
             connect(self.settings.database_url, application_name="conveyor-relay", **kwargs) as conn:
            listener.execute(f"LISTEN {CHANNEL}")
            broker = amqp.connect(self.settings, name="relay")
            try:
                channel = broker.channel()
                channel.confirm_delivery()
                topology.declare_exchanges(channel)
                self.connections += 1
                log.info("relay_started")
                self._loop(listener, conn, broker, channel)
            finally:
                if broker.is_open:
                    broker.close()

    def _loop(self, listener, conn, broker, channel) -> None:
        while not self.stop.is_set():
            while self.drain_once(conn, channel):  # backlog first, after every (re)connect
                broker.process_data_events(time_limit=0)
                if self.stop.is_set():
                    return
            self._purge(conn)
            for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                pass
            broker.process_data_events(time_limit=0)  # heartbeats

    def drain_once(self, conn: psycopg.Connection, channel) -> int:
        """Claim a batch, publish it with confirms, mark it sent; returns how many rows."""
        with conn.transaction():
            outbox = Outbox(conn)
            rows = outbox.claim(self.batch_size)
            for row in rows:
                publish(channel, row)
            outbox.mark_sent([row.id for row in rows])
        self.published += len(rows)
        return len(rows)

    def _purge(self, conn: psycopg.Connection) -> None:
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        with conn.transaction():
            removed = Outbox(conn).purge_sent(older_than_seconds=self.keep_sent_seconds)
        if removed:
            log.info("outbox_purged", rows=removed)


def publish(channel, row: OutboxRow) -> None:
    properties = pika.BasicProperties(
        content_type="application/json", delivery_mode=2, message_id=row.message_id,
        correlation_id=row.correlation_id, type=row.routing_key,
        timestamp=int(row.created_at.timestamp()),
    )
    channel.basic_publish(row.exchange, row.routing_key, row.payload.encode(), properties=properties,
                          mandatory=True)
