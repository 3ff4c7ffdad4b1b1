"""The money rules (conveyor.schemas.money) and an order's price (workers/domain/pricing.py)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from uuid import UUID

import pytest

from conveyor.db import money as db_money
from conveyor.db.intake import FxRate, Pricing, TenantMoney
from conveyor.schemas import money
from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message
from conveyor.workers.domain import pricing

D = Decimal


@pytest.mark.parametrize(("amount", "currency", "half_up", "half_even"), [
    ("0.5", "JPY", "1", "0"), ("2.5", "JPY", "3", "2"), ("1499.49", "JPY", "1499", "1499"),
    ("1.005", "EUR", "1.01", "1.00"), ("1.015", "EUR", "1.02", "1.02"), ("2.675", "EUR", "2.68", "2.68"),
    ("0.0005", "BHD", "0.001", "0.000"), ("1.2345", "BHD", "1.235", "1.234"), ("0.00005", "CLF", "0.0001", "0.0000"),
])
def test_rounding_is_half_up_to_the_currencys_minor_units(amount, currency, half_up, half_even):
    assert money.round_amount(D(amount), currency) == D(half_up)
    assert money.round_amount(D(amount), currency, money.HALF_EVEN) == D(half_even)


@pytest.mark.parametrize(("amount", "currency"), [("1500.5", "JPY"), ("1.005", "EUR"), ("0.0001", "BHD")])
def test_an_amount_finer_than_its_currency_is_refused(amount, currency):
    with pytest.raises(money.MoneyError, match="more decimals than the currency allows"):
        money.check_amount(D(amount), currency)


@pytest.mark.parametrize(("amount", "currency"), [("1500", "JPY"), ("1500.00", "JPY"), ("1.01", "EUR"),
                                                  ("1.234", "BHD"), ("0.0001", "XAU")])
def test_an_amount_within_its_currency_is_accepted(amount, currency):
    money.check_amount(D(amount), currency)


def test_an_unknown_currency_or_country_is_refused():
    with pytest.raises(money.MoneyError, match="unknown currency 'XYZ'"):
        money.minor_units("XYZ")
    with pytest.raises(money.MoneyError, match="unknown country 'QQ'"):
        money.check_country("QQ")


def order(**changes) -> dict:
    return {"order_id": str(uuid.uuid4()), "customer_id": "c", "currency": "EUR", "placed_at": "2026-03-02T10:00:00Z",
            "items": [{"sku": "A", "quantity": 2, "unit_price": "10.00"},
                      {"sku": "B", "quantity": 1, "unit_price": "10.00", "tax_category": "reduced"}], **changes}


def parsed(body: dict) -> OrderCreated:
    return parse_message(json.dumps(body).encode(), OrderCreated, max_bytes=1 << 20)


def test_a_jpy_price_with_decimals_is_refused_by_the_parser_with_the_reason():
    with pytest.raises(InvalidMessage, match=r"items\[1\].unit_price 1500.5 JPY has more decimals"):
        parsed(order(currency="JPY", items=[{"sku": "A", "quantity": 1, "unit_price": "1500.5"}]))


def rules(message: OrderCreated, *, inclusive: bool, fx: FxRate | None = None, base: str = "EUR") -> Pricing:
    return Pricing(tenants={"t": TenantMoney(base, inclusive, True)},
                   tax={message.order_id: {"standard": (D(19), "DE"), "reduced": (D(7), "DE")}},
                   fx={message.order_id: fx} if fx else {})


def test_exclusive_prices_add_tax_per_line():
    message = parsed(order(ship_to={"country": "DE"}))
    price = pricing.price(message, "t", rules(message, inclusive=False))
    assert (price.net, price.tax, price.gross) == (D("30.00"), D("4.50"), D("34.50"))
    assert [line.tax for line in price.lines] == [D("3.80"), D("0.70")]
    assert (price.base_total, price.fx_missing, price.jurisdiction) == (D("34.50"), False, "DE")


def test_inclusive_prices_keep_the_total():
    message = parsed(order(ship_to={"country": "DE"}))
    price = pricing.price(message, "t", rules(message, inclusive=True))
    assert (price.net, price.tax, price.gross) == (D("26.16"), D("3.84"), D("30.00"))


def test_a_tenant_without_rules_keeps_todays_total_and_a_missing_rate_is_flagged():
    message = parsed(order(currency="USD"))
    price = pricing.price(message, "t", Pricing())
    assert (price.net, price.tax, price.gross, price.taxed) == (D("30.00"), D(0), D("30.00"), False)
    assert (price.base_total, price.fx_missing) == (None, True)


def test_the_base_total_is_converted_either_way_round():
    message = parsed(order(currency="USD"))
    direct = pricing.price(message, "t", Pricing(fx={UUID(str(message.order_id)): FxRate(1, D("0.9"), False)}))
    inverse = pricing.price(message, "t", Pricing(fx={message.order_id: FxRate(2, D("1.3"), True)}))
    assert (direct.base_total, direct.fx_rate_id) == (D("27.00"), 1)
    assert (inverse.base_total, inverse.fx_rate) == (D("23.08"), D("0.769230769231"))  # 30 / 1.3 = 23.0769…


def test_a_rate_file_is_refused_whole_with_line_numbers():
    text = "from,to,rate,valid_from,valid_to,source\nUSD,EUR,0,2026-01-01,,x\nGBP,EUR,1.1,2026-01-01,,x\n" \
           "GBP,EUR,1.2,2026-01-01,,x\n"
    with pytest.raises(db_money.LoadRefused) as refused:
        db_money.parse_fx(text)
    assert refused.value.problems[0] == "line 2: rate 0 for USD->EUR must be greater than zero"
    assert refused.value.problems[1].startswith("line 4: GBP->EUR from 2026-01-01 overlaps line 3")


def test_a_tax_file_refuses_a_rate_over_100_percent_and_an_unknown_country():
    text = "jurisdiction,category,rate_percent,valid_from\nDE,standard,100.5,2026-01-01\nXX,standard,5,2026-01-01\n"
    with pytest.raises(db_money.LoadRefused) as refused:
        db_money.parse_tax(text)
    assert refused.value.problems == ["line 2: rate_percent 100.5 is outside 0..100 %",
                                      "line 3: unknown country 'XX': not an ISO 3166-1 alpha-2 code"]
