"""Helpers for the relay tests: stock changes in bulk, a partner's queue on ``inventory``,
reading what a partner received, and relays run as threads or as real processes.

Run as a script (``python -m tests.support.relay '<json options>'``) it is one relay
process, for tests that kill relays: options go to ``OutboxRelay``, plus
``"die_after_confirm": true`` (SIGKILL itself between the broker's confirm and the delete).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pika
import psycopg

from conveyor.workers.config import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Received:
    message_id: str
    routing_key: str
    type: str | None
    body: dict

    @property
    def key(self) -> tuple[str, str]:
        return self.body["tenant_id"], self.body["sku"]


@contextmanager
def partner_queue(amqp_url: str, *, binding: str = "#") -> Iterator[str]:
    """A partner's durable queue bound to ``inventory``; yields its name, deletes it after.
    Holds no connection in between, so it outlives a broker restart."""
    from conveyor.workers.runtime import topology

    name = f"test-partner-{uuid.uuid4().hex[:8]}"
    with _channel(amqp_url) as channel:
        topology.declare_exchanges(channel)
        channel.queue_declare(name, durable=True)
        channel.queue_bind(name, "inventory", routing_key=binding)
    yield name
    with _channel(amqp_url) as channel:
        channel.queue_delete(name)


@contextmanager
def _channel(amqp_url: str) -> Iterator[object]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def seed_skus(database_url: str, skus: list[str], *, on_hand: int = 1_000, tenant: str = "default") -> None:
    """Products and stock levels in one transaction (version 1 each, one outbox row each)."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO tenants (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (tenant, tenant))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO products (tenant_id, sku) VALUES (%s, %s)", [(tenant, s) for s in skus])
            cur.executemany("INSERT INTO stock_levels (tenant_id, sku, on_hand, last_cause) "
                            "VALUES (%s, %s, %s, 'seed')",
                            [(tenant, s, on_hand) for s in skus])


def change_stock(database_url: str, skus: list[str], count: int, *, tenant: str = "default",
                 pause_s: float = 0.0) -> None:
    """``count`` changes, round-robin over ``skus``, each its own transaction (pipelined); no
    prepared statements, so it works through a transaction-pooling PgBouncer as well."""
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
        for n in range(count):
            with conn.transaction():
                conn.execute("UPDATE stock_levels SET on_hand = on_hand + 1, last_cause = %s "
                             "WHERE tenant_id = %s AND sku = %s", (f"test:{n}", tenant, skus[n % len(skus)]))
            if pause_s:
                time.sleep(pause_s)


def pending(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]


def collect(amqp_url: str, queue: str, *, expect: int, timeout: float = 15.0,
            settle_s: float = 0.3) -> list[Received]:
    """Everything in ``queue`` (acked), waiting until ``expect`` distinct message ids arrived
    and then ``settle_s`` more for stragglers (duplicates)."""
    got: list[Received] = []
    ids: set[str] = set()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1000)
        deadline = time.monotonic() + timeout
        quiet_since = None
        for method, properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.05):
            if method is not None:
                got.append(Received(properties.message_id, method.routing_key, properties.type, json.loads(body)))
                ids.add(properties.message_id)
                continue
            now = time.monotonic()
            if len(ids) >= expect:
                quiet_since = quiet_since or now
                if now - quiet_since >= settle_s:
                    break
            if now > deadline:
                break
        channel.cancel()
    finally:
        connection.close()
    return got


def first_copies(messages: list[Received]) -> list[Received]:
    """What a partner that de-duplicates by message_id keeps."""
    seen: set[str] = set()
    kept = []
    for m in messages:
        if m.message_id not in seen:
            seen.add(m.message_id)
            kept.append(m)
    return kept


def versions_by_sku(messages: list[Received]) -> dict[tuple[str, str], list[int]]:
    result: dict[tuple[str, str], list[int]] = defaultdict(list)
    for m in messages:
        result[m.key].append(m.body["version"])
    return dict(result)


def assert_contiguous_in_order(messages: list[Received], *, expected_last: dict[tuple[str, str], int],
                               first: int = 1) -> None:
    """After de-duplication every SKU's versions are first..last, each once, in order."""
    versions = versions_by_sku(first_copies(messages))
    assert set(versions) == set(expected_last), "SKUs missing or unexpected"
    for key, seen in versions.items():
        assert seen == list(range(first, expected_last[key] + 1)), f"{key}: versions {seen[:20]}..."


def current_versions(database_url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {(t, s): v for t, s, v in conn.execute("SELECT tenant_id, sku, version FROM stock_levels")}


@contextmanager
def running_relay(settings: Settings, **options) -> Iterator[object]:
    """An ``OutboxRelay`` on a thread until the block ends; re-raises what killed it."""
    from conveyor.workers.services.relay import OutboxRelay

    stop = threading.Event()
    relay = OutboxRelay(settings, stop=stop, **options)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            relay.run()
        except BaseException as error:  # noqa: BLE001
            failure.append(error)

    thread = threading.Thread(target=run, name="test-relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "relay did not stop"
        if failure:
            raise failure[0]


def relay_process(settings: Settings, **options) -> subprocess.Popen:
    """A relay as a real process (see the module docstring); its output goes to our stderr."""
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url,
           "CONVEYOR_AMQP_URL": settings.amqp_url, "CONVEYOR_LOG_FORMAT": "json",
           "CONVEYOR_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "tests.support.relay", json.dumps(options)], env=env, cwd=ROOT)


def lease_holder(database_url: str) -> tuple[str | None, bool]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT holder, coalesce(expires_at > now(), false) FROM relay_lease").fetchone()


def holder_pid(holder: str) -> int:
    return int(holder.split(":")[1])


def _main(options: dict) -> None:
    from conveyor.workers.config import load_settings
    from conveyor.workers.logging import configure
    from conveyor.workers.services.relay import OutboxRelay

    settings = load_settings()
    configure(log_format=settings.log_format, level=settings.log_level)
    if options.pop("die_after_confirm", False):
        def die(rows, result) -> None:
            if result.confirmed:
                os.kill(os.getpid(), signal.SIGKILL)
        options["after_confirm"] = die
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    OutboxRelay(settings, stop=stop, **options).run()


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
