"""The shipping worker: ``shipment.dispatched`` ships a paid order (its stock is committed:
on hand and reserved both go down), ``shipment.delivered`` completes it."""

from __future__ import annotations

from conveyor.db.uow import UnitOfWork
from conveyor.schemas.lifecycle import ShipmentDelivered, ShipmentDispatched
from conveyor.schemas.names import SHIPMENTS_EXCHANGE
from conveyor.workers.domain.lifecycle import Event
from conveyor.workers.handlers import transitions
from conveyor.workers.handlers.transitions import Details
from conveyor.workers.runtime.spec import HandlerContext, Route, WorkerSpec, event_headers


def handle_dispatched(message: ShipmentDispatched, uow: UnitOfWork, ctx: HandlerContext) -> str:
    order = transitions.locked_order(uow, message.order_id)
    if not uow.fulfilment.record_shipment(message.shipment_id, "dispatched", message.order_id,
                                          carrier=message.carrier, tracking_reference=message.tracking_number):
        return "duplicate_shipment"
    return transitions.apply(uow, order, Event.SHIPMENT_DISPATCHED,
                             Details(message_id=ctx.message_id, shipment_id=message.shipment_id,
                                     headers=event_headers(ctx)))


def handle_delivered(message: ShipmentDelivered, uow: UnitOfWork, ctx: HandlerContext) -> str:
    order = transitions.locked_order(uow, message.order_id)
    if not uow.fulfilment.record_shipment(message.shipment_id, "delivered", message.order_id):
        return "duplicate_shipment"
    return transitions.apply(uow, order, Event.SHIPMENT_DELIVERED,
                             Details(message_id=ctx.message_id, shipment_id=message.shipment_id,
                                     headers=event_headers(ctx)))


SPEC = WorkerSpec(
    name="shipments",
    queue="conveyor.shipments",
    bindings=((SHIPMENTS_EXCHANGE, "shipment.dispatched"), (SHIPMENTS_EXCHANGE, "shipment.delivered")),
    routes={
        "shipment.dispatched": Route(ShipmentDispatched, handle_dispatched,
                                     lock_query=transitions.reservation_lock_pairs),
        "shipment.delivered": Route(ShipmentDelivered, handle_delivered),
    },
)
