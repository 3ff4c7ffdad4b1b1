"""Every message on the wire: exchange, routing key, direction and its pydantic model.

The single list the JSON Schema / AsyncAPI export and the documentation are built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from conveyor.schemas import events, inventory, lifecycle, orders
@dataclass(frozen=True)
class MessageSpec:
    exchange: str
    routing_key: str
    direction: Literal["consumed", "published"]
    model: type[BaseModel]


MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec("orders", "order.created", "consumed", orders.OrderCreated),
    MessageSpec("orders", "order.cancelled", "consumed", lifecycle.CancelOrder),
    MessageSpec("payments", "payment.authorized", "consumed", lifecycle.PaymentAuthorized),
    MessageSpec("payments", "payment.failed", "consumed", lifecycle.PaymentFailed),
    MessageSpec("shipments", "shipment.dispatched", "consumed", lifecycle.ShipmentDispatched),
    MessageSpec("shipments", "shipment.delivered", "consumed", lifecycle.ShipmentDelivered),
    MessageSpec("order-events", "order.reserved", "published", events.OrderReserved),
    MessageSpec("order-events", "order.rejected", "published", events.OrderRejected),
    MessageSpec("order-events", "order.paid", "published", lifecycle.OrderStatusChanged),
    MessageSpec("order-events", "order.cancelled", "published", lifecycle.OrderStatusChanged),
    MessageSpec("order-events", "order.shipped", "published", lifecycle.OrderStatusChanged),
    MessageSpec("order-events", "order.delivered", "published", lifecycle.OrderStatusChanged),
    MessageSpec("order-events", "order.expired", "published", lifecycle.OrderStatusChanged),
    MessageSpec("order-events", "order.payment_refused", "published", lifecycle.RequestRefused),
    MessageSpec("order-events", "order.cancel_refused", "published", lifecycle.RequestRefused),
    MessageSpec("inventory", inventory.ROUTING_KEY_TEMPLATE, "published", inventory.StockChanged),
)
