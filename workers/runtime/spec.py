"""What a worker module hands the runtime: its queue, bindings and one route per message type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may know about the delivery besides the message itself."""

    message_id: str
    routing_key: str
    attempt: int
    default_tenant: str
    # The W3C trace context of the delivery (`traceparent`, `tracestate`), when it had a valid one.
    trace: Mapping[str, str] = field(default_factory=dict)


CAUSATION_HEADER = "x-conveyor-causation-id"


def event_headers(ctx: HandlerContext) -> dict[str, str]:
    """The AMQP headers of an event this delivery causes: its message_id as the causation id,
    and its trace context passed on (docs/contracts.md)."""
    return {CAUSATION_HEADER: ctx.message_id, **ctx.trace}


@dataclass(frozen=True)
class Route:
    model: type[BaseModel]
    # handler(message, uow, ctx) -> outcome label, run inside the caller's transaction
    handler: Callable[[Any, Any, HandlerContext], str]
    # (tenant, sku) pairs to lock before the batch runs, known from the message alone ...
    lock_pairs: Callable[[Any, HandlerContext], list[tuple[str, str]]] | None = None
    # ... or read from the database (message, uow) at the start of the batch transaction.
    # Every lock of a batch is taken in one sorted pass, so batches cannot deadlock.
    lock_query: Callable[[Any, Any], list[tuple[str, str]]] | None = None
    # Optional set-based form of `handler`: batch_handler([(message, ctx), ...], uow) returns
    # one outcome per message, with the same effect as running `handler` on each in order.
    batch_handler: Callable[[list[tuple[Any, HandlerContext]], Any], list[str]] | None = None
    # The fairness key (the tenant) of a message whose rate is limited per key
    # (CONVEYOR_TENANT_RATE_LIMITS, runtime/throttle.py); None: never limited.
    rate_key: Callable[[Any, HandlerContext], str] | None = None


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    queue: str
    bindings: tuple[tuple[str, str], ...]
    routes: dict[str, Route] = field(default_factory=dict)

    @property
    def rate_limited(self) -> bool:
        """Some route's messages may be deferred for fairness (the queue has delay queues)."""
        return any(route.rate_key is not None for route in self.routes.values())
