"""The payment worker: ``payment.authorized`` pays a reserved order (amount and currency
must match its total), ``payment.failed`` cancels it and releases its stock."""

from __future__ import annotations

from conveyor.db.uow import UnitOfWork
from conveyor.schemas.lifecycle import PaymentAuthorized, PaymentFailed
from conveyor.schemas.names import PAYMENTS_EXCHANGE
from conveyor.workers.domain.lifecycle import Event, Kind, Status, step
from conveyor.workers.handlers import transitions
from conveyor.workers.handlers.transitions import Details
from conveyor.workers.runtime.failure import PermanentError
from conveyor.workers.runtime.spec import HandlerContext, Route, WorkerSpec, event_headers


def handle_authorized(message: PaymentAuthorized, uow: UnitOfWork, ctx: HandlerContext) -> str:
    order = transitions.locked_order(uow, message.order_id)
    kind = step(Status(order.status), Event.PAYMENT_AUTHORIZED).kind
    if kind is Kind.MOVE:
        _check_amount(message, order)
    outcome = "refused" if kind is Kind.REFUSE else "authorized"
    if not uow.fulfilment.record_payment(message.payment_id, message.order_id, outcome=outcome,
                                         amount=message.amount, currency=message.currency):
        return "duplicate_payment"
    return transitions.apply(uow, order, Event.PAYMENT_AUTHORIZED, Details(headers=event_headers(ctx),
        message_id=ctx.message_id, payment_id=message.payment_id, amount=message.amount,
        currency=message.currency))


def handle_failed(message: PaymentFailed, uow: UnitOfWork, ctx: HandlerContext) -> str:
    order = transitions.locked_order(uow, message.order_id)
    if not uow.fulfilment.record_payment(message.payment_id, message.order_id, outcome="failed",
                                         detail=message.reason):
        return "duplicate_payment"
    return transitions.apply(uow, order, Event.PAYMENT_FAILED, Details(headers=event_headers(ctx),
        message_id=ctx.message_id, payment_id=message.payment_id, reason=f"payment failed: {message.reason}"))


def _check_amount(message: PaymentAuthorized, order) -> None:
    if message.currency != order.currency or message.amount != order.total:
        raise PermanentError(
            f"payment {message.payment_id} of {message.amount} {message.currency} does not match "
            f"order {order.order_id} total {order.total.normalize():f} {order.currency}")


SPEC = WorkerSpec(
    name="payments",
    queue="conveyor.payments",
    bindings=((PAYMENTS_EXCHANGE, "payment.authorized"), (PAYMENTS_EXCHANGE, "payment.failed")),
    routes={
        "payment.authorized": Route(PaymentAuthorized, handle_authorized,
                                    lock_query=transitions.reservation_lock_pairs),
        "payment.failed": Route(PaymentFailed, handle_failed, lock_query=transitions.reservation_lock_pairs),
    },
)
