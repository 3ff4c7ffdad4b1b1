"""An order's price: each line's tax under the tenant's rules and price model, the order's
net, tax and gross, and its total in the tenant's base currency. Pure: the rules and rates
come from the intake's claim (``conveyor.db.intake.Pricing``), the arithmetic from
``conveyor.schemas.money`` (the one place rounding lives). docs/money.md."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from conveyor.db.intake import FxRate, Pricing, TenantMoney
from conveyor.schemas import money
from conveyor.schemas.orders import OrderCreated


@dataclass(frozen=True, slots=True)
class PricedLine:
    tax_category: str | None
    tax_rate: Decimal | None     # percent; None: no rule (untaxed tenant, or none for the jurisdiction)
    tax: Decimal | None


@dataclass(frozen=True, slots=True)
class Price:
    net: Decimal
    tax: Decimal
    gross: Decimal               # the order's total
    taxed: bool                  # the tenant has tax rules: net and tax are stored
    jurisdiction: str | None
    lines: list[PricedLine]
    base_currency: str
    base_total: Decimal | None   # None when the rate of the order's day is missing
    fx_rate: Decimal | None
    fx_rate_id: int | None

    @property
    def fx_missing(self) -> bool:
        return self.base_total is None


def price(message: OrderCreated, tenant: str, pricing: Pricing) -> Price:
    settings = pricing.tenants.get(tenant) or TenantMoney()
    amounts = [item.unit_price * item.quantity for item in message.items]
    if settings.taxed:
        lines, taxes = _taxed_lines(message, tenant, pricing, amounts, inclusive=settings.prices_include_tax)
    else:  # today's totals: the prices are the total, no tax recorded
        lines, taxes = [PricedLine(None, None, None)] * len(amounts), [money.LineTax(a, Decimal(0), a)
                                                                     for a in amounts]
    net = sum((t.net for t in taxes), start=Decimal(0))
    tax = sum((t.tax for t in taxes), start=Decimal(0))
    gross = net + tax
    jurisdiction = _jurisdiction(message) if settings.taxed else None
    base, rate_id, rate = _in_base(gross, message.currency, settings.base_currency,
                                   pricing.fx.get(message.order_id))
    return Price(net, tax, gross, settings.taxed, jurisdiction, lines, settings.base_currency, base, rate, rate_id)


def _taxed_lines(message: OrderCreated, tenant: str, pricing: Pricing, amounts: list[Decimal], *,
                 inclusive: bool) -> tuple[list[PricedLine], list[money.LineTax]]:
    rules = pricing.tax.get(message.order_id) or {}
    lines, taxes = [], []
    for item, amount in zip(message.items, amounts):
        category = (item.tax_category or pricing.categories.get((tenant, item.sku))
                    or money.DEFAULT_TAX_CATEGORY)
        rule = rules.get(category)
        rate = rule[0] if rule is not None else None
        line = money.line_tax(amount, rate, message.currency, inclusive=inclusive)
        lines.append(PricedLine(category, rate, line.tax))
        taxes.append(line)
    return lines, taxes


def _jurisdiction(message: OrderCreated) -> str | None:
    ship_to = message.ship_to
    if ship_to is None:
        return None
    return money.jurisdictions(ship_to.country, ship_to.region)[0]


def _in_base(total: Decimal, currency: str, base: str,
             fx: FxRate | None) -> tuple[Decimal | None, int | None, Decimal | None]:
    if currency == base:
        return total, None, Decimal(1)
    if fx is None:
        return None, None, None
    effective = fx.rate if not fx.inverse else (Decimal(1) / fx.rate).quantize(Decimal("1e-12"))
    return money.convert(total, fx.rate, base, inverse=fx.inverse), fx.rate_id, effective

