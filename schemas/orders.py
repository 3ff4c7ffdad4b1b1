"""Messages Conveyor consumes from the ``orders`` exchange."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field, model_validator

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

    @model_validator(mode="after")
    def _total_is_money(self) -> OrderCreated:
        """The total (Σ unit_price × quantity) must itself be an amount Conveyor can state:
        at most 20 integer digits, like every money field of its events."""
        if any(item.unit_price >= SAFE_PRICE for item in self.items) and order_total(self) >= MAX_AMOUNT:
            raise ValueError("the order total (sum of unit_price × quantity) must be below 10^20")
        return self


MAX_AMOUNT = Decimal(10) ** 20
# Below this, no order can reach MAX_AMOUNT (200 items × 1,000,000 units × 10^10 < 10^20):
# the sum is only worked out for orders with a larger price.
SAFE_PRICE = Decimal(10) ** 10


def order_total(message: OrderCreated) -> Decimal:
    return sum((item.unit_price * item.quantity for item in message.items), start=Decimal(0))
