"""Test helpers shared by the integration tests: building messages, publishing them,
reading queues, polling the database, and running workers in-process or as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pika
import psycopg

from conveyor.workers.config import Settings, load_settings
from conveyor.workers.runtime.amqp import queue_depth  # noqa: F401 - the tests import it from here

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def order_body(*items: tuple[str, int], order_id: str | None = None, tenant_id: str | None = None,
               price: str = "9.99") -> dict:
    body = {
        "order_id": order_id or str(uuid.uuid4()),
        "customer_id": "customer-1",
        "currency": "EUR",
        "items": [{"sku": sku, "quantity": qty, "unit_price": price} for sku, qty in items],
        "placed_at": datetime.now(timezone.utc).isoformat(),
    }
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    return body


def run_order(database_url: str, body: dict, *, message_id: str | None = None) -> str:
    from conveyor.db.connection import connect
    from conveyor.db.locks import lock_stock
    from conveyor.db.uow import PostgresUnitOfWork
    from conveyor.schemas.orders import OrderCreated
    from conveyor.schemas.parsing import parse_message
    from conveyor.workers.handlers.orders import handle_order_created, lock_pairs
    from conveyor.workers.runtime.spec import HandlerContext

    message = parse_message(json.dumps(body).encode(), OrderCreated, max_bytes=1 << 20)
    ctx = HandlerContext(message_id=message_id or str(uuid.uuid4()), routing_key="order.created",
                         attempt=1, default_tenant="default")
    with connect(database_url) as conn, conn.transaction():
        lock_stock(conn, lock_pairs(message, ctx))
        return handle_order_created(message, PostgresUnitOfWork(conn), ctx)


def publish(amqp_url: str, messages: list[tuple[bytes, dict]], *, exchange: str = "orders",
            routing_key: str = "order.created") -> None:
    """Publish raw bodies with the given property overrides, confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body, overrides in messages:
            props = {"message_id": str(uuid.uuid4()), "content_type": "application/json",
                     "type": routing_key, "delivery_mode": 2, **overrides}
            props = {k: v for k, v in props.items() if v is not None}
            channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(**props),
                                  mandatory=True)
    finally:
        connection.close()


def publish_orders(amqp_url: str, bodies: list[dict], **overrides) -> list[str]:
    """Publish order.created messages; returns their message ids."""
    ids = [str(uuid.uuid4()) for _ in bodies]
    publish(amqp_url, [(json.dumps(b).encode(), {"message_id": i, **overrides}) for b, i in zip(bodies, ids)])
    return ids


def take_all(amqp_url: str, queue: str, *, expect: int = 0, timeout: float = 15.0) -> list[tuple]:
    """Get (and ack) messages from a queue until `expect` arrived (or the queue stays empty)."""
    got: list[tuple] = []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                if len(got) >= expect:
                    break
                time.sleep(0.05)
                continue
            got.append((method, properties, body))
    finally:
        connection.close()
    return got


@contextmanager
def event_tap(amqp_url: str, *, exchange: str = "order-events", binding: str = "#") -> Iterator[str]:
    """A durable test queue bound to an exchange, deleted afterwards; yields its name."""
    name = f"test-tap-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True,
                                 arguments={"alternate-exchange": "conveyor.unrouted"})
        channel.queue_declare(name, durable=True)
        channel.queue_bind(name, exchange, routing_key=binding)
        yield name
        channel.queue_delete(name)
    finally:
        connection.close()


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.1,
               message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def scalar(database_url: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


def set_stock(database_url: str, sku: str, on_hand: int, *, tenant: str = "default") -> None:
    from conveyor.db.stock import StockRepository

    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        StockRepository(conn).set_on_hand(tenant, sku, on_hand)


def settings_for(database_url: str, amqp_url: str, **overrides) -> Settings:
    defaults = dict(database_url=database_url, amqp_url=amqp_url, retry_delays=(1,),
                    max_attempts=3, local_retries=1, lock_timeout_ms=200, log_format="json",
                    log_level="WARNING")
    return load_settings(**{**defaults, **overrides})


@contextmanager
def running_workers(settings: Settings, names: list[str], *, specs=()) -> Iterator[object]:
    """Run workers in this process (threads) until the block ends; yields the supervisor."""
    from conveyor.workers.bootstrap import build_supervisor

    supervisor = build_supervisor(names, settings)
    for spec in specs:
        supervisor.add_worker(spec)
    wait_until(lambda: all(p.consumer.generation > 0 for p in supervisor.processors),
               message="consumers connected")
    try:
        yield supervisor
    finally:
        supervisor.stop.set()
        code = supervisor.wait()
        supervisor.pool.close()
        assert code == 0, "a worker thread crashed"


def worker_process(settings: Settings, *names: str, log_path: str | None = None) -> subprocess.Popen:
    """`conveyor run NAMES...` as a real process with the test's database and vhost."""
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url,
           "CONVEYOR_AMQP_URL": settings.amqp_url, "CONVEYOR_LOG_FORMAT": "json",
           "CONVEYOR_LOG_LEVEL": "INFO", "CONVEYOR_RETRY_DELAYS": "1"}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "conveyor", "run", *names], env=env, cwd=ROOT,
                            stdout=out, stderr=out)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=timeout)


def declare_topology(settings: Settings) -> None:
    """What `conveyor topology declare` does, for tests that publish before a worker starts."""
    from conveyor.workers.bootstrap import declare_topology as declare

    declare(settings)


def consumers_on(amqp_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


class Background(threading.Thread):
    """Run a function in a thread and re-raise its exception on join()."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.fn, self.error = fn, None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as error:  # noqa: BLE001
            self.error = error

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error:
            raise self.error


class RecordingConsumer:
    """The broker side of a processor, reduced to what it is asked to settle."""

    def __init__(self) -> None:
        self.settled: list = []
        self.cancelled = threading.Event()

    def settle(self, generation, settlements, on_done=None) -> None:
        self.settled.extend(settlements)

    def is_live(self, generation: int) -> bool:
        return True


def created_delivery(tag: int, body: dict, *, redelivered: bool = False):
    """An ``order.created`` delivery as the consumer hands it to the processor."""
    from conveyor.workers.runtime.envelope import Delivery

    properties = pika.BasicProperties(message_id=f"created-{body['order_id']}", content_type="application/json",
                                      type="order.created")
    return Delivery(1, tag, "orders", "order.created", redelivered, properties, json.dumps(body).encode())


def order_processor(database_url: str):
    """The order worker's processor on a database, with no broker behind it (RecordingConsumer)."""
    import queue

    from conveyor.workers.handlers.orders import SPEC
    from conveyor.workers.runtime.processor import Processor

    return Processor(SPEC, settings_for(database_url, "amqp://unused/"), inbound=queue.Queue(),
                     consumer=RecordingConsumer(), stop=threading.Event())
