"""Every message on the wire: exchange, routing key, direction and its pydantic model.

The single list the JSON Schema / AsyncAPI export and the documentation are built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from conveyor.schemas import events, inventory, lifecycle, orders
from conveyor.schemas.names import (
    INVENTORY_EXCHANGE,
    ORDER_EVENTS_EXCHANGE,
    ORDERS_EXCHANGE,
    PAYMENTS_EXCHANGE,
    SHIPMENTS_EXCHANGE,
)


@dataclass(frozen=True)
class MessageSpec:
    exchange: str
    routing_key: str
    direction: Literal["consumed", "published"]
    model: type[BaseModel]


MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec(ORDERS_EXCHANGE, "order.created", "consumed", orders.OrderCreated),
    MessageSpec(ORDERS_EXCHANGE, "order.cancelled", "consumed", lifecycle.CancelOrder),
    MessageSpec(PAYMENTS_EXCHANGE, "payment.authorized", "consumed", lifecycle.PaymentAuthorized),
    MessageSpec(PAYMENTS_EXCHANGE, "payment.failed", "consumed", lifecycle.PaymentFailed),
    MessageSpec(SHIPMENTS_EXCHANGE, "shipment.dispatched", "consumed", lifecycle.ShipmentDispatched),
    MessageSpec(SHIPMENTS_EXCHANGE, "shipment.delivered", "consumed", lifecycle.ShipmentDelivered),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.reserved", "published", events.OrderReserved),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.rejected", "published", events.OrderRejected),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.paid", "published", lifecycle.OrderStatusChanged),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.cancelled", "published", lifecycle.OrderStatusChanged),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.shipped", "published", lifecycle.OrderStatusChanged),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.delivered", "published", lifecycle.OrderStatusChanged),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.expired", "published", lifecycle.OrderStatusChanged),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.payment_refused", "published", lifecycle.RequestRefused),
    MessageSpec(ORDER_EVENTS_EXCHANGE, "order.cancel_refused", "published", lifecycle.RequestRefused),
    MessageSpec(INVENTORY_EXCHANGE, inventory.ROUTING_KEY_TEMPLATE, "published", inventory.StockChanged),
)
