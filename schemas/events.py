"""Events Conveyor publishes on the ``order-events`` exchange (written to the outbox first)."""

from __future__ import annotations

from typing import Literal

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

RejectionReason = Literal["unknown_sku", "insufficient_stock"]


class ReservedLine(BaseModel):
    model_config = MESSAGE_CONFIG

    line_no: int = Field(ge=1)
    sku: Sku
    quantity: Quantity
    unit_price: Money


class OrderReserved(BaseModel):
    """``order.reserved``: every line's stock is held for this order."""

    model_config = MESSAGE_CONFIG

    order_id: UuidString
    tenant_id: TenantId
    customer_id: ExternalId
    currency: CurrencyCode
    total: Money
    lines: list[ReservedLine]
    occurred_at: Timestamp
    net: Money | None = Field(default=None, description="Σ lines before tax (= total without tax rules)")
    tax: Money | None = Field(default=None, description="Σ lines' tax (0 without tax rules)")
    gross: Money | None = Field(default=None, description="net + tax = total")


class RejectedLine(BaseModel):
    model_config = MESSAGE_CONFIG

    line_no: int = Field(ge=1)
    sku: Sku
    requested: Quantity
    available: int = Field(ge=0)
    reason: RejectionReason


class OrderRejected(BaseModel):
    """``order.rejected``: nothing was reserved; ``lines`` says why, line by line."""

    model_config = MESSAGE_CONFIG

    order_id: UuidString
    tenant_id: TenantId
    customer_id: ExternalId
    lines: list[RejectedLine] = Field(min_length=1)
    occurred_at: Timestamp
