"""Carrying out a state-machine step on an order, inside the caller's unit of work:
move the status, settle the stock, log the transition, and write the event to the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from uuid import UUID

from conveyor.db.orders import LockedOrder
from conveyor.db.uow import UnitOfWork
from conveyor.schemas.lifecycle import OrderStatus, OrderStatusChanged, RequestRefused
from conveyor.schemas.names import ORDER_EVENTS_EXCHANGE
from conveyor.workers.domain import lifecycle
from conveyor.workers.domain.lifecycle import Kind, Status, Stock
from conveyor.workers.runtime.failure import PermanentError, RetryableError


@dataclass(frozen=True)
class Details:
    """What the triggering message adds to the event it causes."""

    message_id: str | None = None
    reason: str | None = None
    payment_id: str | None = None
    shipment_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # the event's: causation id, trace context


def locked_order(uow: UnitOfWork, order_id: UUID) -> LockedOrder:
    """The order, row-locked; an order not seen yet may still be in flight: retry later."""
    order = uow.order_states.lock(order_id)
    if order is None:
        raise RetryableError(f"order {order_id} is not known yet")
    return order


def apply(uow: UnitOfWork, order: LockedOrder, event: lifecycle.Event, details: Details) -> str:
    """Apply ``event`` to ``order``; returns the outcome label for the log."""
    step = lifecycle.step(Status(order.status), event)
    if step.kind is Kind.WAIT:
        raise RetryableError(f"order {order.order_id} is {order.status}: {step.reason}")
    if step.kind is Kind.INVALID:
        raise PermanentError(f"order {order.order_id} is {order.status}: {step.reason}")
    if step.kind is Kind.IGNORE:
        return "ignored"
    if step.event is None:
        raise PermanentError(f"state machine step without an event: {order.status} + {event.value}")  # a table bug
    if step.kind is Kind.REFUSE:
        _publish(uow, step.event, order.order_id, _refusal(order, step, details), details)
        return "refused"
    to = _target(step)
    _move(uow, order, step, event, details)
    return to.value.lower()


def _target(step: lifecycle.Step) -> Status:
    if step.to is None:
        raise PermanentError(f"a move without a target status: {step}")  # a table bug: MOVE steps name one
    return step.to


def _move(uow: UnitOfWork, order: LockedOrder, step: lifecycle.Step, event: lifecycle.Event,
          details: Details) -> None:
    cause = f"{step.event}:{order.order_id}"
    to = _target(step)
    if step.stock is Stock.RELEASE:
        uow.reservations.release(order.order_id, cause=cause)
    elif step.stock is Stock.COMMIT:
        uow.reservations.commit(order.order_id, cause=cause)
    uow.order_states.move(order, to=to.value, event=event.value, message_id=details.message_id,
                          reason=details.reason)
    payload = OrderStatusChanged(
        order_id=order.order_id, tenant_id=order.tenant_id, status=_wire_status(to.value),
        previous_status=_wire_status(order.status), reason=details.reason, payment_id=details.payment_id,
        shipment_id=details.shipment_id, occurred_at=datetime.now(timezone.utc))
    _publish(uow, step.event or "", order.order_id, payload, details)


def _refusal(order: LockedOrder, step: lifecycle.Step, details: Details) -> RequestRefused:
    return RequestRefused(
        order_id=order.order_id, tenant_id=order.tenant_id, status=_wire_status(order.status), reason=step.reason,
        payment_id=details.payment_id, amount=details.amount, currency=details.currency,
        occurred_at=datetime.now(timezone.utc))


def _wire_status(status: str) -> OrderStatus:
    """A stored status as the event schema types it (the orders table's CHECK keeps it one of them)."""
    return Status(status).value


def _publish(uow: UnitOfWork, routing_key: str, order_id: UUID, event, details: Details) -> None:
    uow.outbox.add(exchange=ORDER_EVENTS_EXCHANGE, routing_key=routing_key,
                   payload=event.model_dump(mode="json", exclude_none=True),
                   correlation_id=str(order_id), headers=dict(details.headers) or None)


def expire(uow: UnitOfWork, order_id: UUID, *, reason: str) -> str | None:
    """Expire an order still RESERVED (its stock is released); None when it moved on meanwhile
    (a payment, a cancellation or another expirer got there first)."""
    order = uow.order_states.lock(order_id)
    if order is None or order.status != lifecycle.Status.RESERVED.value:
        return None
    return apply(uow, order, lifecycle.Event.RESERVATION_EXPIRED, Details(reason=reason))


def reservation_lock_pairs(message, uow: UnitOfWork) -> list[tuple[str, str]]:
    """The (tenant, SKU) pairs an order's reservations touch: locked before its stock moves."""
    return uow.reservations.skus_of([message.order_id])
