"""Helpers for the DLQ console's integration tests: realistic dead letters, the console run
in-process (or as a real process), and independent reads of a queue to check it afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pika
from pika.spec import BasicProperties

from conveyor.db.errors import TransientDatabaseError
from conveyor.schemas.errors import InvalidMessage
from conveyor.workers.dlq.letters import DeadLetter
from conveyor.workers.runtime.envelope import Delivery, Failure, failure_properties
from tests.support.workers import ROOT

QUEUE, DLQ = "conveyor.orders", "conveyor.orders.dlq"
OPERATOR = "ops-alice"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


def dlq(settings, *args: str, stdin: str = "", operator: str = OPERATOR) -> Result:
    """`conveyor dlq ARGS...` in this process (fast), with the test's database and vhost."""
    from conveyor.workers.cli import main

    env = {"CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url,
           "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "WARNING", "CONVEYOR_OPERATOR": operator,
           "CONVEYOR_MANAGEMENT_URL": settings.management_url or ""}
    out, err = io.StringIO(), io.StringIO()
    with _environment(env), _stdin(stdin), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["dlq", *args])
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code
    return Result(code, out.getvalue(), err.getvalue())


def dlq_process(settings, *args: str, operator: str = OPERATOR) -> subprocess.Popen:
    """`conveyor dlq ARGS...` as a real process (for SIGKILL)."""
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url,
           "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_OPERATOR": operator}
    return subprocess.Popen([sys.executable, "-m", "conveyor", "dlq", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@contextlib.contextmanager
def _environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _stdin(text: str):
    saved, sys.stdin = sys.stdin, io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def raised(error: BaseException) -> BaseException:
    """The error with a real traceback, as the runtime sees it."""
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001
        return caught


def lock_timeout() -> BaseException:
    error = raised(TransientDatabaseError("55P03: canceling statement due to lock timeout"))
    error.code = "55P03"
    return error


def schema_violation(detail: str) -> BaseException:
    return raised(InvalidMessage("schema_violation", detail))


def dead_letter_properties(body: bytes, error: BaseException, *, message_id: str | None = None,
                           attempts: int = 1, reason: str = "transient: gave up after 3 attempts",
                           failed_at: datetime | None = None, routing_key: str = "order.created") -> BasicProperties:
    """What the order worker publishes to its DLQ (built by the runtime's own function)."""
    original = BasicProperties(message_id=message_id or str(uuid.uuid4()), content_type="application/json",
                               type=routing_key, delivery_mode=2, app_id="shop")
    delivery = Delivery(1, 1, "orders", routing_key, False, original, body)
    code = getattr(error, "code", type(error).__name__)
    return failure_properties(delivery, Failure(error, code, reason), queue=QUEUE, attempts=attempts,
                              now=failed_at or datetime.now(timezone.utc))


def put_in_dlq(amqp_url: str, letters: list[tuple[bytes, BasicProperties]], *, queue: str = DLQ) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body, properties in letters:
            channel.basic_publish("", queue, body, properties, mandatory=True)
    finally:
        connection.close()


def drain(amqp_url: str, queue: str) -> list[tuple[BasicProperties, bytes]]:
    """Take (and ack) everything in a queue, head first: an independent check of content and order."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    taken = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))
    finally:
        connection.close()


def dead_lettered_by_broker(amqp_url: str, body: bytes, properties: BasicProperties, *, queue: str = DLQ,
                            source: str = "conveyor.test.expiring") -> None:
    """Let the broker itself dead-letter a message into ``queue`` (it expires in a TTL queue), so it
    carries a real ``x-death`` and ``x-first-death-*`` headers; returns once it is there."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        before = channel.queue_declare(queue, passive=True).method.message_count
        channel.queue_declare(source, durable=True, arguments={
            "x-message-ttl": 1, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue})
        channel.basic_publish("", source, body, properties, mandatory=True)
        deadline = time.monotonic() + 10
        while channel.queue_declare(queue, passive=True).method.message_count == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker did not dead-letter into {queue}")
            connection.sleep(0.02)
        channel.queue_delete(source)
    finally:
        connection.close()


def first_delivery_marks(amqp_url: str, queue: str) -> list[tuple[bool, object]]:
    """(redelivered, x-delivery-count) of each message, taken with a consumer and handed back by a
    bare Channel.Close: shows whether anything had held them before."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        depth = channel.queue_declare(queue, passive=True).method.message_count
        marks: list[tuple[bool, object]] = []
        channel.basic_qos(prefetch_count=max(depth, 1))
        channel.basic_consume(queue, lambda _c, method, props, _b: marks.append(
            (method.redelivered, (props.headers or {}).get("x-delivery-count"))))
        deadline = time.monotonic() + 10
        while len(marks) < depth and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
        channel._impl.close()  # noqa: SLF001 - as the console does: the broker returns them in order
        return marks
    finally:
        connection.close()


def conveyor_headers(properties: BasicProperties) -> dict:
    return {k: v for k, v in (properties.headers or {}).items() if k.startswith("x-conveyor-")}


def hold_stock_lock(database_url: str, sku: str, tenant: str = "default"):
    """Another transaction sits on the SKU's advisory lock: the worker's lock times out (55P03)."""
    import psycopg

    from conveyor.db.locks import stock_lock_key

    conn = psycopg.connect(database_url)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (stock_lock_key(tenant, sku),))
    return conn


def make_letter(message: str = "boom", *, error_class: str = "ValueError", where: str = "worker.py:10 handle",
                failed_at: datetime | None = None, routing_key: str = "order.created") -> DeadLetter:
    """A DeadLetter for pure tests."""
    return DeadLetter(position=0, message_id="m", order_id=None, exchange="orders", routing_key=routing_key,
                      original_queue=QUEUE, error_class=error_class, error_code="x", error_message=message,
                      reason="", where=where, attempts=1, first_failed_at=failed_at, failed_at=failed_at,
                      replay_id=None, replayed_by=None, body_size=1)
