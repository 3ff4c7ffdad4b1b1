"""The consumer runtime under trouble, on real servers: a handler slower than the heartbeat,
broker connections reset mid-stream, database backends killed, a database outage.
Every message must take effect exactly once and nothing may land in the DLQ."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from pydantic import BaseModel

from conveyor.schemas.types import MESSAGE_CONFIG
from conveyor.workers.runtime.spec import Route, WorkerSpec
from tests.support.tcp_proxy import TcpProxy
from tests.support.workers import publish, queue_depth, running_workers, scalar, settings_for, wait_until

QUEUE = "conveyor.test-pings"
pytestmark = pytest.mark.slow


class Ping(BaseModel):
    model_config = MESSAGE_CONFIG
    n: int
    sleep_ms: int = 0


def handle_ping(message: Ping, uow, ctx) -> str:
    time.sleep(message.sleep_ms / 1000)
    uow.outbox.add(exchange="order-events", routing_key="test.ping", payload={"n": message.n},
                   correlation_id=str(message.n))
    return "pinged"


PINGS = WorkerSpec(name="pings", queue=QUEUE, bindings=(("orders", "test.ping"),),
                   routes={"test.ping": Route(Ping, handle_ping)})


def send_pings(amqp_url: str, count: int, *, sleep_ms: int = 0) -> None:
    publish(amqp_url, [(json.dumps({"n": n, "sleep_ms": sleep_ms}).encode(), {}) for n in range(count)],
            routing_key="test.ping")


def effects(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT payload->>'n') FROM outbox "
                            "WHERE routing_key = 'test.ping'").fetchone()


def assert_exactly_once(settings, count: int) -> None:
    wait_until(lambda: effects(settings.database_url)[1] == count and queue_depth(settings.amqp_url, QUEUE) == 0,
               timeout=60, message=f"{count} pings processed")
    time.sleep(0.5)
    assert effects(settings.database_url) == (count, count)
    assert queue_depth(settings.amqp_url, QUEUE + ".dlq") == 0


def test_a_handler_slower_than_the_heartbeat_keeps_its_connection(database_url, fresh_amqp_url):
    # Given a 1 s heartbeat and a handler that works for 4 s
    settings = settings_for(database_url, fresh_amqp_url, heartbeat_seconds=1, batch_size=1)
    with running_workers(settings, [], specs=[PINGS]) as supervisor:
        # When one slow message is processed
        send_pings(fresh_amqp_url, 1, sleep_ms=4000)
        assert_exactly_once(settings, 1)
        consumer = supervisor.processors[0].consumer
        # Then the connection survived (no reconnect) and the message was not redelivered
        assert consumer.generation == 1
    assert scalar(database_url, "SELECT count(*) FROM inbox") == 1


def test_broker_connections_reset_mid_stream_lose_and_double_nothing(database_url, fresh_amqp_url):
    # Given the worker reaches the broker through a proxy we can cut
    proxy, proxied_url = TcpProxy.for_url(fresh_amqp_url)
    settings = settings_for(database_url, proxied_url, batch_size=10)
    try:
        with running_workers(settings, [], specs=[PINGS]) as supervisor:
            send_pings(fresh_amqp_url, 400, sleep_ms=2)
            # When every broker connection is reset three times while it works
            for _ in range(3):
                wait_until(lambda: supervisor.processors[0].stats.processed > 0)
                proxy.reset_all()
                time.sleep(0.7)
            # Then it reconnected and every message took effect exactly once
            assert_exactly_once(settings, 400)
            assert supervisor.processors[0].consumer.generation >= 2
    finally:
        proxy.close()


def test_database_backends_killed_mid_stream_lose_and_double_nothing(database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url, batch_size=10)
    with running_workers(settings, [], specs=[PINGS]):
        send_pings(fresh_amqp_url, 400, sleep_ms=2)
        killed = 0
        for _ in range(3):
            time.sleep(0.3)
            with psycopg.connect(database_url, autocommit=True) as conn:
                killed += conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert_exactly_once(settings, 400)
    assert killed >= 1


def test_a_database_outage_holds_messages_until_it_is_back_without_burning_attempts(
        database_url, fresh_amqp_url):
    # Given the worker reaches PostgreSQL through a proxy
    proxy, proxied_url = TcpProxy.for_url(database_url)
    settings = settings_for(proxied_url, fresh_amqp_url, max_attempts=2)
    try:
        with running_workers(settings, [], specs=[PINGS]):
            # When the database disappears for a few seconds while messages arrive
            proxy.refuse = True
            proxy.reset_all()
            send_pings(fresh_amqp_url, 50)
            time.sleep(4)
            assert effects(database_url) == (0, 0)
            proxy.refuse = False
            # Then they are all processed once it is back, none dead-lettered
            assert_exactly_once(settings, 50)
    finally:
        proxy.close()
