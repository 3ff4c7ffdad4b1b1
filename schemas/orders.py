"""Messages Conveyor consumes from the ``orders`` exchange."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field, model_validator

from conveyor.schemas import money
from conveyor.schemas.tolerance import SchemaVersion
from conveyor.schemas.types import (
    MESSAGE_CONFIG,
    CurrencyCode,
    ExternalId,
    Money,
    Quantity,
    Sku,
    TaxCategory,
    TenantId,
    Timestamp,
    UuidString,
)


class OrderItem(BaseModel):
    model_config = MESSAGE_CONFIG

    sku: Sku
    quantity: Quantity
    unit_price: Money
    tax_category: TaxCategory | None = Field(
        default=None, description="the line's tax category (default: the product's, else \"standard\")")


class ShipTo(BaseModel):
    """Where the order goes, for tax: the jurisdiction is ``country`` or ``country-region``."""

    model_config = MESSAGE_CONFIG

    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    region: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,3}$",
                               description="ISO 3166-2 subdivision code without the country (\"CA\" for US-CA)")


PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"  # no control characters (they are refused everywhere else too)
EMAIL = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,252}\.[^@\s\x00-\x1f\x7f]+$"


class ShippingAddress(BaseModel):
    model_config = MESSAGE_CONFIG

    line1: str = Field(min_length=1, max_length=200, pattern=PLAIN_TEXT)
    line2: str | None = Field(default=None, max_length=200, pattern=PLAIN_TEXT)
    city: str = Field(min_length=1, max_length=100, pattern=PLAIN_TEXT)
    postal_code: str | None = Field(default=None, max_length=20, pattern=PLAIN_TEXT)
    region: str | None = Field(default=None, max_length=100, pattern=PLAIN_TEXT)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class Customer(BaseModel):
    """Who ordered: personal data. Stored encrypted (docs/privacy.md), never logged, never in
    an event Conveyor publishes."""

    model_config = MESSAGE_CONFIG

    email: str = Field(max_length=254, pattern=EMAIL)
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=PLAIN_TEXT)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()./-]{3,32}$")
    shipping_address: ShippingAddress | None = None

    def fields(self) -> dict[str, str]:
        """The data as flat text fields (``shipping_address.city``, …), the form it is sealed in."""
        flat = {k: v for k, v in self.model_dump(exclude={"shipping_address"}).items() if v is not None}
        if self.shipping_address is not None:
            flat |= {f"shipping_address.{k}": v for k, v in self.shipping_address.model_dump().items()
                     if v is not None}
        return flat


class OrderCreated(BaseModel):
    """``order.created``: a shop asks Conveyor to reserve stock for an order. Rules over
    several fields: the total (Σ unit_price × quantity) is below 10^20; ``currency`` is an
    active ISO 4217 code and no ``unit_price`` has more decimals than its minor units (JPY
    none, EUR 2, BHD 3); ``ship_to.country`` is an ISO 3166-1 code (docs/money.md)."""

    model_config = MESSAGE_CONFIG

    order_id: UuidString
    tenant_id: TenantId | None = None
    customer_id: ExternalId
    currency: CurrencyCode
    items: list[OrderItem] = Field(min_length=1, max_length=200)
    placed_at: Timestamp
    customer: Customer | None = None
    ship_to: ShipTo | None = None
    schema_version: SchemaVersion = 1

    @model_validator(mode="after")
    def _amounts_fit_the_currency(self) -> OrderCreated:
        """An unknown currency, a price more precise than its currency (``1500.5`` JPY) or an
        unknown ship-to country is refused with the reason (conveyor.schemas.money)."""
        try:
            for n, item in enumerate(self.items, start=1):
                money.check_amount(item.unit_price, self.currency, what=f"items[{n}].unit_price")
            if self.ship_to is not None:
                money.check_country(self.ship_to.country)
        except money.MoneyError as error:
            raise ValueError(str(error)) from None
        return self

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
