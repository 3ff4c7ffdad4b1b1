"""Messages about an order after its reservation: payments, shipments, cancellation (consumed)
and the lifecycle events Conveyor publishes on ``order-events``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from conveyor.schemas.tolerance import SchemaVersion
from conveyor.schemas.types import MESSAGE_CONFIG, CurrencyCode, ExternalId, Money, Reason, Timestamp, UuidString

OrderStatus = Literal["RESERVED", "REJECTED", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "EXPIRED"]


class PaymentAuthorized(BaseModel):
    """``payment.authorized`` (exchange ``payments``): the order's total was authorized."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    payment_id: ExternalId
    amount: Money
    currency: CurrencyCode
    schema_version: SchemaVersion = 1


class PaymentFailed(BaseModel):
    """``payment.failed`` (exchange ``payments``): the payment will not happen."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    payment_id: ExternalId
    reason: Reason
    schema_version: SchemaVersion = 1


class ShipmentDispatched(BaseModel):
    """``shipment.dispatched`` (exchange ``shipments``): the goods left the warehouse."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    shipment_id: ExternalId
    carrier: ExternalId
    tracking_number: ExternalId
    schema_version: SchemaVersion = 1


class ShipmentDelivered(BaseModel):
    """``shipment.delivered`` (exchange ``shipments``): the customer has the goods."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    shipment_id: ExternalId
    schema_version: SchemaVersion = 1


class CancelOrder(BaseModel):
    """``order.cancelled`` (exchange ``orders``): the shop asks to cancel the order."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    reason: Reason
    schema_version: SchemaVersion = 1


class OrderStatusChanged(BaseModel):
    """``order.paid``, ``order.cancelled``, ``order.shipped``, ``order.delivered``,
    ``order.expired`` (exchange ``order-events``): the order moved to ``status``."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    tenant_id: ExternalId
    status: OrderStatus
    previous_status: OrderStatus
    reason: Reason | None = None
    payment_id: ExternalId | None = None
    shipment_id: ExternalId | None = None
    occurred_at: Timestamp


class RequestRefused(BaseModel):
    """``order.payment_refused`` and ``order.cancel_refused`` (exchange ``order-events``):
    a payment or cancellation arrived that the order's state does not allow; nothing changed.
    A refused payment means: void or refund the authorization."""

    model_config = MESSAGE_CONFIG
    order_id: UuidString
    tenant_id: ExternalId
    status: OrderStatus
    reason: Reason
    payment_id: ExternalId | None = None
    amount: Money | None = None
    currency: CurrencyCode | None = None
    occurred_at: Timestamp
