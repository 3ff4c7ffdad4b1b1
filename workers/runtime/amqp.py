"""pika connection set-up: parameters from the URL plus heartbeat, blocked-connection
timeout and a connection name; the exceptions that mean "reconnect"; a queue's depth.

Several brokers (``CONVEYOR_AMQP_URLS``, the nodes of a cluster): ``connect`` tries them in
turn, starting at a node each process picks at random once (so a group of processes spreads
over the cluster, and one process keeps going back to the same node while it answers), then
the next ones in the configured order, wrapping round. A broker that does not answer is
skipped with one warning (``broker_unreachable``, not repeated until it answered again);
when none answers, ``BrokersUnreachable`` lists them all (the CLI's exit 3).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Iterator

import pika
import pika.exceptions

from conveyor.workers.config import Settings, broker_urls, redact
from conveyor.workers.logging import get_logger

log = get_logger("conveyor.amqp")

# Everything that means the connection or channel is gone and a new one is needed.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    ConnectionError,
    OSError,
)


class BrokersUnreachable(pika.exceptions.AMQPConnectionError):
    """No broker of the list answered; ``failures`` is (redacted URL, why) for each."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        super().__init__(failures)
        self.failures = failures

    def __str__(self) -> str:
        listed = "; ".join(f"{url} ({why})" for url, why in self.failures)
        return f"no broker answered ({len(self.failures)} tried): {listed}"


# A random start per process; brokers already warned about (until they answer again).
_START = random.randrange(1 << 30)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def parameters(settings: Settings, *, name: str, url: str | None = None) -> pika.URLParameters:
    params = pika.URLParameters(url or settings.amqp_url)
    params.heartbeat = settings.heartbeat_seconds
    # Without it, a publish during a broker memory/disk alarm waits forever.
    params.blocked_connection_timeout = settings.blocked_connection_timeout
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.client_properties = {"connection_name": f"conveyor-{name}"}
    return params


def connection_order(urls: list[str], start: int | None = None) -> list[str]:
    """``urls`` from this process's starting point (or ``start``) on, wrapping round."""
    first = (_START if start is None else start) % len(urls)
    return urls[first:] + urls[:first]


def connect(settings: Settings, *, name: str) -> pika.BlockingConnection:
    """A connection to the first broker that answers (see the module's docstring)."""
    urls = broker_urls(settings)
    if len(urls) == 1:
        return pika.BlockingConnection(parameters(settings, name=name, url=urls[0]))
    failures: list[tuple[str, str]] = []
    for url in connection_order(urls):
        try:
            with _quiet_connection_workflow():
                connection = pika.BlockingConnection(parameters(settings, name=name, url=url))
        except (pika.exceptions.AMQPConnectionError, OSError) as error:
            failures.append((redact(url), _why(error)))
            _warn_once(url, name=name, why=failures[-1][1])
            continue
        with _warned_lock:
            _warned.discard(url)
        return connection
    raise BrokersUnreachable(failures)


def _warn_once(url: str, *, name: str, why: str) -> None:
    with _warned_lock:
        if url in _warned:
            return
        _warned.add(url)
    log.warning("broker_unreachable", broker=redact(url), connection=name, error=why,
                action="skipped: trying the next broker of CONVEYOR_AMQP_URLS")


def _why(error: BaseException) -> str:
    """One short line: pika wraps the socket error in workflow and connector errors."""
    inner = error
    for _ in range(5):
        nested = getattr(inner, "exceptions", None)
        if nested:
            inner = nested[-1]
        elif isinstance(getattr(inner, "exception", None), BaseException):  # pika's connector errors
            inner = inner.exception  # type: ignore[attr-defined]
        elif inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        else:
            break
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}"[:200] if text else type(inner).__name__


# pika logs every failed attempt at ERROR on these loggers (seven records, a traceback among
# them); while ``connect`` tries a list, the one warning above says it instead.
_WORKFLOW_LOGGERS = ("pika.adapters.utils.connection_workflow", "pika.adapters.utils.io_services_utils",
                     "pika.adapters.blocking_connection")
_quiet = threading.local()


class _DuringOurAttempt(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


for _name in _WORKFLOW_LOGGERS:
    logging.getLogger(_name).addFilter(_DuringOurAttempt())


@contextlib.contextmanager
def _quiet_connection_workflow() -> Iterator[None]:
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = False


def queue_figures(connection: pika.BlockingConnection, queues: list[str]) -> dict[str, tuple[int, int]]:
    """(messages, consumers) of each queue that exists, by passive declares on one channel
    (a missing queue closes the channel with 404: it is left out and a new channel opened)."""
    figures: dict[str, tuple[int, int]] = {}
    channel = connection.channel()
    for name in queues:
        try:
            method = channel.queue_declare(name, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            channel = connection.channel()
            continue
        figures[name] = (method.message_count, method.consumer_count)
    if channel.is_open:
        channel.close()
    return figures


def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare on a short-lived connection)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()
