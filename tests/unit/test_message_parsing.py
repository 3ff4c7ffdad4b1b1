"""Bytes → OrderCreated: every refusal code of schemas/parsing.py, the exact values of a
valid order, and property tests over arbitrary bytes, valid orders and stray floats."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message

MAX_BYTES = 64 * 1024
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

ORDER_ID = "3f1c6a52-6a0e-4a4f-8d8f-1c1e8a3a9b10"


def valid_order(**changes: Any) -> dict[str, Any]:
    order = {
        "order_id": ORDER_ID,
        "tenant_id": "acme",
        "customer_id": "cust-42",
        "currency": "EUR",
        "items": [
            {"sku": "SKU-1", "quantity": 2, "unit_price": "19.99"},
            {"sku": "SKU-2", "quantity": 1, "unit_price": "0.01"},
        ],
        "placed_at": "2024-05-01T12:30:00+02:00",
    }
    order.update(changes)
    return order


def with_item(**changes: Any) -> dict[str, Any]:
    order = valid_order()
    order["items"][0].update(changes)
    return order


def without(field: str) -> dict[str, Any]:
    order = valid_order()
    del order[field]
    return order


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def parse(body: bytes, *, max_bytes: int = MAX_BYTES) -> OrderCreated:
    return parse_message(body, OrderCreated, max_bytes=max_bytes)


def refusal(body: bytes, *, max_bytes: int = MAX_BYTES) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        parse(body, max_bytes=max_bytes)
    return caught.value


# --- a valid order ----------------------------------------------------------------------

def test_a_valid_order_parses_with_exact_values() -> None:
    # Given a well-formed order.created body
    body = encode(valid_order())

    # When it is parsed
    order = parse(body)

    # Then every field has its exact value; money is an exact Decimal, never a float
    assert order.order_id == UUID(ORDER_ID)
    assert order.tenant_id == "acme"
    assert order.customer_id == "cust-42"
    assert order.currency == "EUR"
    assert [(i.sku, i.quantity) for i in order.items] == [("SKU-1", 2), ("SKU-2", 1)]
    assert order.items[0].unit_price == Decimal("19.99")
    assert order.items[1].unit_price == Decimal("0.01")
    assert all(type(i.unit_price) is Decimal for i in order.items)
    assert order.placed_at == datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)
    assert order.placed_at.utcoffset() == timedelta(hours=2)


def test_tenant_id_is_optional() -> None:
    # Given an order without a tenant
    body = encode(without("tenant_id"))

    # When it is parsed
    order = parse(body)

    # Then the tenant is left for the worker to default
    assert order.tenant_id is None


@pytest.mark.parametrize("price", ["0", "1", "12.5", "12.50", "99999999999999999999.9999"])
def test_money_strings_within_the_pattern_are_accepted(price: str) -> None:
    order = with_item(unit_price=price, quantity=1)
    order["currency"] = "CLF"  # 4 minor units: every decimal the pattern allows
    del order["items"][1:]  # alone, so that the total is the price
    assert parse(encode(order)).items[0].unit_price == Decimal(price)


def test_an_order_whose_total_is_not_an_amount_is_refused() -> None:
    # Given two lines whose prices are valid amounts but whose total has 21 integer digits
    order = with_item(unit_price="60000000000000000000", quantity=1)
    order["items"].append({"sku": "SKU-2", "quantity": 1, "unit_price": "40000000000000000000"})

    # When it is parsed, Then it is refused with the reason (no event could state its total)
    with pytest.raises(InvalidMessage) as refused:
        parse(encode(order))
    assert refused.value.code == "schema_violation" and "below 10^20" in refused.value.detail


def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    body = encode(valid_order())
    assert parse(body, max_bytes=len(body)).customer_id == "cust-42"


# --- refusals before the schema ---------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"x" * (MAX_BYTES + 1), "too_large", id="too-large"),
        pytest.param(b'{"a": "\xff"}', "bad_encoding", id="invalid-utf8-byte"),
        pytest.param(b'{"a": "\xc3"}', "bad_encoding", id="truncated-utf8-sequence"),
        pytest.param('{"a": "é"}'.encode("latin-1"), "bad_encoding", id="latin-1"),
        pytest.param('{"a": 1}'.encode("utf-16"), "bad_encoding", id="utf-16"),
        pytest.param(b"", "not_json", id="empty-body"),
        pytest.param(b"not json", "not_json", id="plain-text"),
        pytest.param(b'{"order_id": ', "not_json", id="truncated-json"),
        pytest.param(b"{'a': 1}", "not_json", id="single-quotes"),
        pytest.param(b'{"a": 1,}', "not_json", id="trailing-comma"),
        pytest.param(b'{"a": NaN}', "not_json", id="NaN"),
        pytest.param(b'{"a": Infinity}', "not_json", id="Infinity"),
        pytest.param(b'{"a": -Infinity}', "not_json", id="minus-Infinity"),
        pytest.param(b'{"items": [{"q": NaN}]}', "not_json", id="nested-NaN"),
        pytest.param(b"[" * 50_000, "not_json", id="deep-nesting"),
        pytest.param(b"[" * 3_000 + b"]" * 3_000, "not_json", id="deep-but-balanced-nesting"),
        # Regression: Python refuses to convert an integer of more than 4300 digits with a
        # ValueError, which escaped the parser and stopped the worker thread.
        pytest.param(b'{"a": ' + b"9" * 5_000 + b"}", "not_json", id="integer-of-5000-digits"),
        pytest.param(b'{"a": -' + b"9" * 5_000 + b"}", "not_json", id="negative-integer-of-5000-digits"),
        pytest.param(b'{"a": 1, "a": 1}', "duplicate_key", id="duplicate-key"),
        pytest.param(b'{"a": {"b": 1, "b": 2}}', "duplicate_key", id="nested-duplicate-key"),
        pytest.param(b'{"items": [{"sku": "A", "sku": "B"}]}', "duplicate_key", id="duplicate-key-in-list"),
        pytest.param(b'{"a": 1.5}', "float_number", id="fraction"),
        pytest.param(b'{"a": 1e5}', "float_number", id="exponent"),
        pytest.param(b'{"a": 1.0}', "float_number", id="whole-float"),
        pytest.param(b'{"a": -0.0}', "float_number", id="negative-zero"),
        pytest.param(b'{"items": [{"unit_price": 19.99}]}', "float_number", id="nested-float"),
        pytest.param(b'{"a": "\\u0000"}', "control_character", id="NUL-in-value"),
        pytest.param(b'{"a": {"b\\u0000": "x"}}', "control_character", id="NUL-in-nested-key"),
        pytest.param(b'{"a": {"b": ["ok", "x\\u0000"]}}', "control_character", id="NUL-in-nested-value"),
        pytest.param(b'{"a": "\\u001b[31m"}', "control_character", id="escape"),
        pytest.param(b'{"a": "\\u007f"}', "control_character", id="DEL"),
        pytest.param(b'{"a": "\\u0085"}', "control_character", id="C1-next-line"),
        pytest.param('{"a": "\u009b"}'.encode(), "control_character", id="raw-C1-in-utf8"),
    ],
)
def test_malformed_bodies_are_refused_with_a_code(body: bytes, code: str) -> None:
    # Given a body broken at the byte, text or JSON level
    # When it is parsed
    error = refusal(body)

    # Then it is refused with the matching code
    assert error.code == code


def test_control_characters_are_refused_in_a_valid_order_too() -> None:
    # Given an otherwise valid order whose customer id holds a NUL
    body = encode(valid_order(customer_id="cust\u000042"))

    # When it is parsed
    error = refusal(body)

    # Then the control character is refused before the schema is even consulted
    assert error.code == "control_character"


@pytest.mark.parametrize("text", ["tab\there", "line\nbreak", "carriage\rreturn", "ünïcödé ✓"])
def test_tab_newline_and_ordinary_unicode_are_not_control_characters(text: str) -> None:
    assert parse(encode(valid_order(customer_id=text))).customer_id == text


def test_size_limit_is_checked_before_anything_else() -> None:
    # Given a body that is too large and also not UTF-8
    body = b"\xff" * 2048

    # When it is parsed with a 1 KiB limit
    error = refusal(body, max_bytes=1024)

    # Then size is what it is refused for
    assert error.code == "too_large"


# --- schema violations ------------------------------------------------------------------

def _schema_cases() -> list[Any]:
    cases = [
        ("missing-order-id", without("order_id")),
        ("missing-customer-id", without("customer_id")),
        ("missing-currency", without("currency")),
        ("missing-items", without("items")),
        ("missing-placed-at", without("placed_at")),
        # parse_message is strict: unknown fields are refused (the tolerant reader that
        # consumers use by default drops them: test_tolerant_reader.py)
        ("extra-field", valid_order(discount="5.00")),
        ("extra-field-on-item", with_item(colour="red")),
        ("missing-field-on-item", {**valid_order(), "items": [{"sku": "A", "quantity": 1}]}),
        ("quantity-as-string", with_item(quantity="2")),
        ("quantity-as-bool", with_item(quantity=True)),
        ("quantity-zero", with_item(quantity=0)),
        ("quantity-negative", with_item(quantity=-1)),
        ("quantity-too-large", with_item(quantity=1_000_001)),
        ("unit-price-as-number", with_item(unit_price=20)),
        ("unit-price-exponent", with_item(unit_price="1e5")),
        ("unit-price-five-decimals", with_item(unit_price="1.23456")),
        ("unit-price-negative", with_item(unit_price="-1")),
        ("unit-price-leading-space", with_item(unit_price=" 1")),
        ("unit-price-trailing-space", with_item(unit_price="1 ")),
        ("unit-price-trailing-dot", with_item(unit_price="1.")),
        ("unit-price-leading-dot", with_item(unit_price=".5")),
        ("unit-price-empty", with_item(unit_price="")),
        ("unit-price-plus-sign", with_item(unit_price="+1")),
        ("unit-price-comma", with_item(unit_price="1,50")),
        ("unit-price-NaN-string", with_item(unit_price="NaN")),
        ("unit-price-trailing-newline", with_item(unit_price="1\n")),
        ("unit-price-21-digits", with_item(unit_price="1" * 21)),
        # Python's \d matches any Unicode digit; the published JSON Schema pattern (ECMA-262)
        # and every other consumer of "a decimal string" mean ASCII 0-9 only.
        ("unit-price-arabic-indic-digits", with_item(unit_price="\u0661\u0662.\u0665")),
        ("unit-price-fullwidth-digits", with_item(unit_price="\uff11\uff12")),
        ("unit-price-null", with_item(unit_price=None)),
        ("lowercase-currency", valid_order(currency="eur")),
        ("two-letter-currency", valid_order(currency="EU")),
        ("currency-as-number", valid_order(currency=978)),
        ("naive-timestamp", valid_order(placed_at="2024-05-01T12:30:00")),
        ("timestamp-as-number", valid_order(placed_at=1714559400)),
        ("timestamp-not-a-date", valid_order(placed_at="yesterday")),
        # Regression: valid ISO-8601, but before year 1 or after 9999 once in UTC: PostgreSQL
        # stored it and every later read of the order failed (payments, the expirer, order show).
        ("timestamp-before-year-1-in-utc", valid_order(placed_at="0001-01-01T00:00:00+14:00")),
        ("timestamp-after-year-9999-in-utc", valid_order(placed_at="9999-12-31T23:59:59-14:00")),
        ("bad-uuid", valid_order(order_id="not-a-uuid")),
        ("uuid-too-short", valid_order(order_id=ORDER_ID[:-1])),
        ("uuid-as-number", valid_order(order_id=12345)),
        ("empty-items", valid_order(items=[])),
        ("items-not-a-list", valid_order(items={"sku": "A"})),
        ("too-many-items", valid_order(items=[{"sku": "A", "quantity": 1, "unit_price": "1"}] * 201)),
        ("empty-sku", with_item(sku="")),
        ("empty-customer-id", valid_order(customer_id="")),
        ("customer-id-as-number", valid_order(customer_id=42)),
        ("tenant-with-space", valid_order(tenant_id="a b")),
        ("body-is-a-list", [valid_order()]),
        ("body-is-a-string", "order"),
    ]
    return [pytest.param(document, id=name) for name, document in cases]


@pytest.mark.parametrize("document", _schema_cases())
def test_orders_that_break_the_schema_are_refused_as_schema_violation(document: Any) -> None:
    # Given well-formed JSON that does not match the order.created schema
    body = encode(document)

    # When it is parsed
    error = refusal(body)

    # Then it is a schema violation, with a detail to put in the DLQ headers
    assert error.code == "schema_violation"
    assert error.detail


def test_schema_violation_detail_names_the_offending_field() -> None:
    error = refusal(encode(with_item(quantity="2")))
    assert "items.0.quantity" in error.detail


# --- properties -------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_invalid_message(body: bytes) -> None:
    # Given any bytes at all
    # When they are parsed as an order
    try:
        parse(body, max_bytes=256)
    # Then the only possible failure is InvalidMessage
    except InvalidMessage as error:
        assert error.code in {"too_large", "bad_encoding", "not_json", "duplicate_key",
                              "float_number", "control_character", "schema_violation"}


# JSON-ish text is far likelier than random bytes to get past the first checks.
_json_fragments = st.lists(
    st.sampled_from(['{', '}', '[', ']', ',', ':', '"', '"a"', '"items"', '1', '-1', '1.5', '1e3',
                     'NaN', 'true', 'null', '"\\u0000"', '"\\ud800"', ' ', '"order_id"', '"x"']),
    max_size=40,
).map(lambda parts: "".join(parts).encode())


@PROPERTY_SETTINGS
@given(_json_fragments)
def test_json_like_garbage_never_raises_anything_but_invalid_message(body: bytes) -> None:
    try:
        parse(body)
    except InvalidMessage:
        pass


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128)
_money = st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,4})?", fullmatch=True)
_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
_moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=_offsets)
_items = st.fixed_dictionaries({
    "sku": _text,
    "quantity": st.integers(min_value=1, max_value=1_000_000),
    "unit_price": _money,
})
_orders = st.fixed_dictionaries(
    {
        "order_id": st.uuids().map(str),
        "customer_id": _text,
        "currency": st.sampled_from(["CLF", "UYW", "XAU"]),  # 4 minor units: any price of the pattern
        "items": st.lists(_items, min_size=1, max_size=5).filter(
            lambda items: sum(Decimal(i["unit_price"]) * i["quantity"] for i in items) < 10 ** 20),
        "placed_at": _moments.map(datetime.isoformat),
    },
    optional={"tenant_id": st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True))},
)


@PROPERTY_SETTINGS
@given(_orders)
def test_valid_orders_round_trip_with_the_same_values(document: dict[str, Any]) -> None:
    # Given any valid order, serialised as JSON
    body = json.dumps(document).encode()

    # When it is parsed
    order = parse(body)

    # Then every value survives unchanged
    assert order.order_id == UUID(document["order_id"])
    assert order.tenant_id == document.get("tenant_id")
    assert order.customer_id == document["customer_id"]
    assert order.currency == document["currency"]
    assert [(i.sku, i.quantity, i.unit_price) for i in order.items] == [
        (i["sku"], i["quantity"], Decimal(i["unit_price"])) for i in document["items"]]
    assert order.placed_at == datetime.fromisoformat(document["placed_at"])
    assert order.placed_at.utcoffset() == datetime.fromisoformat(document["placed_at"]).utcoffset()


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, path + (index,))
    return found


def _replace(document: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    document = copy.deepcopy(document)
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return document


_json_floats = st.floats(allow_nan=False, allow_infinity=False)


@PROPERTY_SETTINGS
@given(_orders, _json_floats, st.data())
def test_a_float_anywhere_in_a_valid_order_is_refused(document: dict[str, Any], number: float,
                                                       data: st.DataObject) -> None:
    # Given a valid order with one value (or a new field) replaced by a JSON float
    path = data.draw(st.sampled_from(_paths(document)), label="path")
    if data.draw(st.booleans(), label="add a field instead") and isinstance(
            target := _get(document, path), dict):
        tampered = _replace(document, path, {**target, "extra": number})
    else:
        tampered = _replace(document, path, number)
    body = json.dumps(tampered).encode()

    # When it is parsed
    error = refusal(body)

    # Then the float is refused as such, never coerced into a money or quantity value
    assert error.code == "float_number"


def _get(document: Any, path: tuple) -> Any:
    for step in path:
        document = document[step]
    return document


@settings(max_examples=300, deadline=None)
@given(value=st.text(), key=st.text(min_size=1), ascii_only=st.booleans(), indent=st.sampled_from([None, 2]))
def test_the_quick_control_character_check_never_misses_one(value, key, ascii_only, indent):
    # The fast path (one search of the text when there are no escapes) must never say "none"
    # when the walk over the parsed document would find one: in keys, values, nested lists.
    from conveyor.schemas.parsing import _control_characters_possible, _refuse_control_characters

    body = json.dumps({key: [value, {"x": value}]}, ensure_ascii=ascii_only, indent=indent).encode()
    try:
        _refuse_control_characters(json.loads(body), path="$")
        walk_finds = False
    except InvalidMessage:
        walk_finds = True
    assert _control_characters_possible(body) or not walk_finds
