"""RabbitMQ names and their idempotent declaration.

Per work queue: a quorum queue with an explicit delivery limit, one retry queue per
delay tier (queue-level TTL, dead-lettering back to the work queue) and ``<queue>.dlq``;
a queue whose messages may be deferred for tenant fairness also has ``<queue>.defer.<N>s``.
"""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.schemas.names import INBOUND_EXCHANGES, OUTBOUND_EXCHANGES
from conveyor.workers.runtime.spec import WorkerSpec
from conveyor.workers.runtime.throttle import DEFER_TIERS

__all__ = ["INBOUND_EXCHANGES", "OUTBOUND_EXCHANGES"]  # re-exported: declared here, defined there
# Events nobody has bound a queue for yet land here instead of being dropped or
# blocking the relay (publishes are mandatory); bounded, oldest dropped first.
UNROUTED = "conveyor.unrouted"
UNROUTED_MAX_LENGTH = 100_000


def dlq_name(queue: str) -> str:
    return f"{queue}.dlq"


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


def declare_exchanges(channel) -> None:
    channel.exchange_declare(UNROUTED, exchange_type="fanout", durable=True)
    channel.queue_declare(UNROUTED, durable=True, arguments={
        "x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"})
    channel.queue_bind(UNROUTED, UNROUTED)
    for name in INBOUND_EXCHANGES:
        channel.exchange_declare(name, exchange_type="topic", durable=True)
    for name in OUTBOUND_EXCHANGES:
        channel.exchange_declare(name, exchange_type="topic", durable=True,
                                 arguments={"alternate-exchange": UNROUTED})


def declare_worker(channel, spec: WorkerSpec, *, retry_delays: Iterable[int], delivery_limit: int) -> None:
    channel.queue_declare(dlq_name(spec.queue), durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_declare(spec.queue, durable=True,
                          arguments=work_queue_arguments(spec.queue, delivery_limit=delivery_limit))
    for delay in sorted(set(retry_delays)):
        channel.queue_declare(retry_queue_name(spec.queue, delay), durable=True,
                              arguments=retry_queue_arguments(spec.queue, delay))
    if spec.rate_limited:  # the same shape as a retry tier: a TTL, then back to the work queue
        for delay in DEFER_TIERS:
            channel.queue_declare(defer_queue_name(spec.queue, delay), durable=True,
                                  arguments=retry_queue_arguments(spec.queue, delay))
    for exchange, routing_key in spec.bindings:
        channel.queue_bind(spec.queue, exchange, routing_key=routing_key)
