"""Messages Conveyor consumes from the ``orders`` exchange."""

from __future__ import annotations

from pydantic import BaseModel, Field

from conveyor.schemas.types import (
    MESSAGE_CONFIG,
    CurrencyCode,
    ExternalId,
    Money,
    Quantity,
    Sku,
    TenantId,
    Timestamp,
    UuidString,
)


class OrderItem(BaseModel):
    model_config = MESSAGE_CONFIG

    sku: Sku
    quantity: Quantity
    unit_price: Money


class OrderCreated(BaseModel):
    """``order.created``: a shop asks Conveyor to reserve stock for an order."""

    model_config = MESSAGE_CONFIG

    order_id: UuidString
    tenant_id: TenantId | None = None
    customer_id: ExternalId
    currency: CurrencyCode
    items: list[OrderItem] = Field(min_length=1, max_length=200)
    placed_at: Timestamp
