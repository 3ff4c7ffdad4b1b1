"""The optional ``customer`` object of ``order.created``: what is accepted, what is refused."""

from __future__ import annotations

import json
import uuid

import pytest

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message

GOOD = {"email": "ada@example.org", "name": "Ada Lovelace", "phone": "+44 (20) 7946-0000",
        "shipping_address": {"line1": "12 St James's Square", "line2": "Flat 2", "city": "London",
                             "postal_code": "SW1Y 4JH", "region": "Greater London", "country": "GB"}}


def order_with(customer: object) -> bytes:
    return json.dumps({"order_id": str(uuid.uuid4()), "customer_id": "c-1", "currency": "EUR",
                       "items": [{"sku": "A", "quantity": 1, "unit_price": "1.00"}],
                       "placed_at": "2026-12-07T10:00:00+00:00", "customer": customer}).encode()


def test_a_full_customer_is_accepted_and_flattened_for_sealing():
    message = parse_message(order_with(GOOD), OrderCreated, max_bytes=1 << 20)
    assert message.customer is not None
    assert message.customer.fields()["shipping_address.postal_code"] == "SW1Y 4JH"
    assert len(message.customer.fields()) == 9


def test_only_the_email_is_required():
    message = parse_message(order_with({"email": "a@b.io"}), OrderCreated, max_bytes=1 << 20)
    assert message.customer is not None and message.customer.fields() == {"email": "a@b.io"}


@pytest.mark.parametrize("customer", [
    {},
    {"email": "not-an-email"},
    {"email": "a@b"},
    {"email": "a b@c.de"},
    {"email": "a@b.de", "name": "Ada\u0000"},
    {"email": "a@b.de", "name": ""},
    {"email": "a@b.de", "phone": "call me"},
    {"email": "a@b.de", "shipping_address": {"line1": "1 R", "city": "C", "country": "gb"}},
    {"email": "a@b.de", "shipping_address": {"line1": "1 R", "city": "C", "country": "GBR"}},
    {"email": "a@b.de", "shipping_address": {"line1": "1 R", "country": "GB"}},
    {"email": "a@b.de", "shipping_address": {"line1": "1 R\nX", "city": "C", "country": "GB"}},
    {"email": "x" * 250 + "@b.de"},
    "ada@example.org",
], ids=lambda c: json.dumps(c)[:40])
def test_a_bad_customer_is_refused_with_a_reason(customer):
    with pytest.raises(InvalidMessage) as refused:
        parse_message(order_with(customer), OrderCreated, max_bytes=1 << 20)
    assert "customer" in str(refused.value)
