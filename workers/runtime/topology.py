"""RabbitMQ names and their idempotent declaration.

Per work queue: a quorum queue with an explicit delivery limit, one retry queue per
delay tier (queue-level TTL, dead-lettering back to the work queue) and ``<queue>.dlq``;
a queue whose messages may be deferred for tenant fairness also has ``<queue>.defer.<N>s``.

With ``quorum_replicas`` (``CONVEYOR_QUORUM_REPLICAS``, a cluster) a quorum queue that does not
exist yet is declared with ``x-quorum-initial-group-size``; one that exists is left as it is:
RabbitMQ (3.10.8, checked) refuses a declare whose group size differs from the queue's, or is
absent where the queue has one, with 406 PRECONDITION_FAILED, so the argument may only ever be
sent to create a queue (``declare_quorum``: a passive declare on a channel of its own first).

A DLQ must never have a delivery limit (it has nowhere to dead-letter, so a limit drops the
letters a console look hands back): its arguments depend on the broker's version, see
``dlq_arguments`` and docs/dlq.md, "Looking never wears a message down".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pika.exceptions

from conveyor.schemas.names import INBOUND_EXCHANGES, OUTBOUND_EXCHANGES
from conveyor.workers.logging import get_logger
from conveyor.workers.runtime.spec import WorkerSpec
from conveyor.workers.runtime.throttle import DEFER_TIERS

__all__ = ["INBOUND_EXCHANGES", "OUTBOUND_EXCHANGES"]  # re-exported: declared here, defined there
# Events nobody has bound a queue for yet land here instead of being dropped or
# blocking the relay (publishes are mandatory); bounded, oldest dropped first.
UNROUTED = "conveyor.unrouted"
UNROUTED_MAX_LENGTH = 100_000
log = get_logger("conveyor.topology")


# RabbitMQ 4.0 gave every quorum queue a default delivery limit of 20; `x-delivery-limit: -1`
# lifts it. 3.x has no default and takes -1 as 0 (measured on 3.10.8: the message is dropped
# at its first return), so -1 may only be declared on a broker that has the default.
DEFAULT_DELIVERY_LIMIT_SINCE = (4, 0)
NO_DELIVERY_LIMIT = -1


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


def parse_version(value: object) -> tuple[int, ...] | None:
    """``"4.1.0"``, ``b"3.10.8"``, ``"4.0.0-rc.2"`` → (4, 1, 0), ...; None when unreadable."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        return None
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", value.strip())
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def broker_version(connection: object) -> tuple[int, ...] | None:
    """The broker's version, from the ``server_properties`` of its ``connection.start``
    (a pika ``BlockingConnection``, or its ``_impl``); None when it did not say."""
    impl = getattr(connection, "_impl", connection)
    properties = getattr(impl, "server_properties", None)
    return parse_version(properties.get("version")) if isinstance(properties, dict) else None


def has_default_delivery_limit(version: tuple[int, ...] | None) -> bool:
    return version is not None and version >= DEFAULT_DELIVERY_LIMIT_SINCE


def dlq_arguments(version: tuple[int, ...] | None) -> dict:
    """How a DLQ is declared on a broker of this version so that no delivery limit applies.
    An unknown version gets the 3.x shape: -1 there would mean "drop at the first return"."""
    arguments: dict = {"x-queue-type": "quorum"}
    if has_default_delivery_limit(version):
        arguments["x-delivery-limit"] = NO_DELIVERY_LIMIT
    return arguments


QUORUM_GROUP_SIZE = "x-quorum-initial-group-size"


def queue_exists(connection, queue: str) -> bool:
    """A passive declare on a channel of its own (a 404 closes the channel it was asked on)."""
    probe = connection.channel()
    try:
        probe.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != 404:
            raise
        return False
    probe.close()
    return True


def declare_quorum(channel, queue: str, arguments: dict, *, replicas: int | None) -> None:
    """Declare a quorum queue. ``replicas`` None: as always (a redeclare checks the arguments).
    Otherwise a queue that exists is left as it is, and a new one gets ``replicas`` members."""
    if replicas is None:
        channel.queue_declare(queue, durable=True, arguments=arguments)
        return
    if queue_exists(channel.connection, queue):
        return
    channel.queue_declare(queue, durable=True, arguments={**arguments, QUORUM_GROUP_SIZE: replicas})


def declare_dlq(channel, queue: str, *, replicas: int | None = None) -> None:
    """Declare ``queue`` as a DLQ with the arguments for the broker ``channel`` is on."""
    connection = getattr(channel, "connection", None)
    version = broker_version(connection)
    if version is None or not has_default_delivery_limit(version):
        declare_quorum(channel, queue, dlq_arguments(version), replicas=replicas)
        return
    if replicas is not None:
        if queue_exists(connection, queue):
            return
        channel.queue_declare(queue, durable=True, arguments={**dlq_arguments(version), QUORUM_GROUP_SIZE: replicas})
        return
    _declare_dlq_own_channel(connection, queue, version)


def _declare_dlq_own_channel(connection, queue: str, version: tuple[int, ...]) -> None:
    """On 4.x, on a channel of its own: a DLQ declared before the upgrade (without the
    argument) refuses the new arguments with 406. That must not stop the workers, which only
    publish to it; the console refuses to look at such a DLQ and says how to fix it."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue, durable=True, arguments=dlq_arguments(version))
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != 406 or "x-delivery-limit" not in str(error.reply_text):
            raise
        log.warning(
            "dlq_declared_without_delivery_limit_argument", queue=queue, detail=str(error.reply_text)[:300],
            fix="docs/dlq.md, 'Looking never wears a message down': recreate it (export, delete, declare, import)")
        return
    channel.close()


def retry_queue_name(queue: str, delay_seconds: int) -> str:
    return f"{queue}.retry.{delay_seconds}s"


def defer_queue_name(queue: str, delay_seconds: int) -> str:
    """Where a message deferred for tenant fairness waits (runtime/throttle.py)."""
    return f"{queue}.defer.{delay_seconds}s"


def work_queue_arguments(queue: str, *, delivery_limit: int) -> dict:
    # A message that crashes its consumer over and over is dead-lettered by the broker
    # after `delivery_limit` deliveries; at-least-once needs reject-publish overflow.
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dlq_name(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(queue: str, delay_seconds: int) -> dict:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_seconds * 1000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def declare_exchanges(channel, *, quorum_replicas: int | None = None) -> None:
    """The exchanges and ``conveyor.unrouted``: a classic queue on one broker; with
    ``quorum_replicas`` (a cluster) a quorum queue when it is created, so that it is not
    on one node only (a durable classic queue whose node is down refuses every declare)."""
    channel.exchange_declare(UNROUTED, exchange_type="fanout", durable=True)
    unrouted = {"x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"}
    if quorum_replicas is None:
        channel.queue_declare(UNROUTED, durable=True, arguments=unrouted)
    else:
        declare_quorum(channel, UNROUTED, {"x-queue-type": "quorum", **unrouted}, replicas=quorum_replicas)
    channel.queue_bind(UNROUTED, UNROUTED)
    for name in INBOUND_EXCHANGES:
        channel.exchange_declare(name, exchange_type="topic", durable=True)
    for name in OUTBOUND_EXCHANGES:
        channel.exchange_declare(name, exchange_type="topic", durable=True,
                                 arguments={"alternate-exchange": UNROUTED})


def declare_worker(channel, spec: WorkerSpec, *, retry_delays: Iterable[int], delivery_limit: int,
                   quorum_replicas: int | None = None) -> None:
    declare_dlq(channel, dlq_name(spec.queue), replicas=quorum_replicas)
    declare_quorum(channel, spec.queue, work_queue_arguments(spec.queue, delivery_limit=delivery_limit),
                   replicas=quorum_replicas)
    for delay in sorted(set(retry_delays)):
        declare_quorum(channel, retry_queue_name(spec.queue, delay), retry_queue_arguments(spec.queue, delay),
                       replicas=quorum_replicas)
    if spec.rate_limited:  # the same shape as a retry tier: a TTL, then back to the work queue
        for delay in DEFER_TIERS:
            declare_quorum(channel, defer_queue_name(spec.queue, delay), retry_queue_arguments(spec.queue, delay),
                           replicas=quorum_replicas)
    for exchange, routing_key in spec.bindings:
        channel.queue_bind(spec.queue, exchange, routing_key=routing_key)
