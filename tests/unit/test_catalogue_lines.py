"""The catalogue file's line checks (conveyor.schemas.catalogue): one reason per refused line."""

from __future__ import annotations

import io

import pytest

from conveyor.schemas.catalogue import ISO_4217_MINOR_UNITS, BadLine, FileRefused, check_price, read_products


def lines(text: str | bytes, file_format: str = "csv"):
    data = text.encode() if isinstance(text, str) else text
    return list(read_products(io.BytesIO(data), file_format=file_format, default_tenant="default",  # type: ignore[arg-type]
                              minor_units=ISO_4217_MINOR_UNITS))


@pytest.mark.parametrize(("price", "currency", "ok"), [
    ("19.90", "EUR", True), ("19.900", "EUR", True), ("19.901", "EUR", False), ("100", "JPY", True),
    ("100.0", "JPY", True), ("100.5", "JPY", False), ("1.234", "KWD", True), ("1.2345", "KWD", False),
    ("0", "EUR", True), ("01", "EUR", False), ("1e3", "EUR", False), ("-1", "EUR", False), (" 1", "EUR", False),
    ("1.23456", "CLF", False), ("1" * 25, "EUR", False),
])
def test_a_price_must_fit_its_currencys_minor_units(price, currency, ok):
    if ok:
        assert check_price(price, currency, ISO_4217_MINOR_UNITS[currency]) == price
    else:
        with pytest.raises(BadLine):
            check_price(price, currency, ISO_4217_MINOR_UNITS[currency])


def test_a_json_number_is_not_a_price():
    [line] = lines('{"sku": "A", "name": "B", "price": 19.9, "currency": "EUR"}\n', "jsonl")
    assert line.reason == 'price must be a decimal string ("19.90"), not float'


def test_a_multi_line_csv_record_is_numbered_by_its_first_line():
    found = lines('sku,name,description,price,currency\nA,B,"two\nlines",1,EUR\nC,D,,1.001,EUR\n')
    assert [(x.number, x.reason is None) for x in found] == [(2, True), (4, False)]
    assert found[0].product is not None and found[0].product.description == "two\nlines"


def test_the_second_of_two_equal_skus_names_the_first():
    found = lines('sku,name,price,currency,tenant_id\nA,B,1,EUR,\nA,B,1,EUR,other\nA,C,2,EUR,\n')
    assert [x.reason for x in found] == [None, None, "duplicate SKU 'A' (first on line 2)"]


@pytest.mark.parametrize(("text", "reason"), [
    ('{"sku": "A", "name": "B", "price": "1", "currency": "EUR", "colour": "red"}', "unknown field(s) 'colour'"),
    ('{"sku": "A", "sku": "B"}', "duplicate key 'sku'"),
    ('[1]', "a line must be a JSON object"),
    ('{"sku": "A", "name": "B\\u0000", "price": "1", "currency": "EUR"}', "name holds a control character"),
    ('{"sku": "A", "name": "B", "price": "1", "currency": "EUR", "tenant_id": "a b"}', "tenant_id 'a b'"),
    ('{"sku": "A", "name": "B", "price": "1", "currency": "EUR", "attributes": {"x": NaN}}', "NaN is not allowed"),
])
def test_json_lines_refusals(text, reason):
    [line] = lines(text + "\n", "jsonl")
    assert line.product is None and reason in str(line.reason)


def test_a_byte_order_mark_is_accepted_and_bad_utf8_names_its_line():
    assert lines("\ufeffsku,name,price,currency\nA,B,1,EUR\n")[0].product is not None
    with pytest.raises(FileRefused) as refused:
        lines(b"sku,name,price,currency\nA,B,1,EUR\nA,\xff,1,EUR\n")
    assert refused.value.line == 3
