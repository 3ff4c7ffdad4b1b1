"""The order worker: ``order.created`` → reserve every line or none, record the order,
and write ``order.reserved`` / ``order.rejected`` to the outbox, all in the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timezone

from db.orders import NewLine, NewOrder
from db.uow import UnitOfWork
from schemas.events import OrderRejected, OrderReserved, RejectedLine, ReservedLine
from schemas.orders import OrderCreated
from schemas.lifecycle import CancelOrder
from workers import reservation, transitions
from workers.lifecycle import Event
from workers.transitions import Details
from workers.runtime.spec import HandlerContext, Route, WorkerSpec

EVENTS_EXCHANGE = "order-events"


def lock_pairs(message: OrderCreated, ctx: HandlerContext) -> list[tuple[str, str]]:
    tenant = message.tenant_id or ctx.default_tenant
    return [(tenant, item.sku) for item in message.items]


def handle_order_created(message: OrderCreated, uow: UnitOfWork, ctx: HandlerContext) -> str:
    tenant = message.tenant_id or ctx.default_tenant
    if not uow.orders.register(message.order_id, tenant_id=tenant, placed_at=message.placed_at):
        return "duplicate_order"
    lines = [reservation.LineRequest(n, item.sku, item.quantity)
             for n, item in enumerate(message.items, start=1)]
    stock = uow.stock.levels(tenant, sorted({line.sku for line in lines}))
    decision = reservation.decide(lines, stock)
    if decision.accepted:
        uow.stock.reserve(tenant, decision.quantities, cause=f"order.reserved:{message.order_id}")
    _record_order(message, tenant, decision, uow, ctx)
    if decision.accepted:
        uow.orders.add_reservations(message.order_id, tenant, decision.quantities)
    _publish_outcome(message, tenant, decision, uow)
    return "reserved" if decision.accepted else "rejected"


def _record_order(message: OrderCreated, tenant: str, decision: reservation.ReservationDecision,
                  uow: UnitOfWork, ctx: HandlerContext) -> None:
    reasons = {r.line_no: r.reason for r in decision.rejections}
    lines = [NewLine(n, item.sku, item.quantity, item.unit_price, reasons.get(n))
             for n, item in enumerate(message.items, start=1)]
    uow.orders.add(NewOrder(
        order_id=message.order_id, tenant_id=tenant, customer_id=message.customer_id,
        currency=message.currency, total=order_total(message), placed_at=message.placed_at,
        status="RESERVED" if decision.accepted else "REJECTED",
        status_reason=None if decision.accepted else _summary(decision),
        source_message_id=ctx.message_id, lines=lines,
    ))


def _publish_outcome(message: OrderCreated, tenant: str, decision: reservation.ReservationDecision,
                     uow: UnitOfWork) -> None:
    now = datetime.now(timezone.utc)
    if decision.accepted:
        event = OrderReserved(
            order_id=message.order_id, tenant_id=tenant, customer_id=message.customer_id,
            currency=message.currency, total=order_total(message), occurred_at=now,
            lines=[ReservedLine(line_no=n, sku=i.sku, quantity=i.quantity, unit_price=i.unit_price)
                   for n, i in enumerate(message.items, start=1)])
        routing_key = "order.reserved"
    else:
        event = OrderRejected(
            order_id=message.order_id, tenant_id=tenant, customer_id=message.customer_id,
            occurred_at=now,
            lines=[RejectedLine(line_no=r.line_no, sku=r.sku, requested=r.requested,
                                available=r.available, reason=r.reason) for r in decision.rejections])
        routing_key = "order.rejected"
    uow.outbox.add(exchange=EVENTS_EXCHANGE, routing_key=routing_key,
                   payload=event.model_dump(mode="json"), correlation_id=str(message.order_id))


def handle_cancel(message: CancelOrder, uow: UnitOfWork, ctx: HandlerContext) -> str:
    """Upstream cancels: allowed before dispatch (stock released), refused after it."""
    order = transitions.locked_order(uow, message.order_id)
    return transitions.apply(uow, order, Event.CANCEL_REQUESTED,
                             Details(message_id=ctx.message_id, reason=f"cancelled by shop: {message.reason}"))


def order_total(message: OrderCreated):
    return sum((item.unit_price * item.quantity for item in message.items), start=0)


def _summary(decision: reservation.ReservationDecision) -> str:
    return "; ".join(f"line {r.line_no} {r.sku}: {r.reason}" for r in decision.rejections)[:500]


SPEC = WorkerSpec(
    name="orders",
    queue="conveyor.orders",
    bindings=(("orders", "order.created"), ("orders", "order.cancelled")),
    routes={
        "order.created": Route(OrderCreated, handle_order_created, lock_pairs),
        "order.cancelled": Route(CancelOrder, handle_cancel, lock_query=transitions.reservation_lock_pairs),
    },
)
