"""A shop's unit test with Conveyor's real parser and handlers, in memory (docs/clients.md).

    pytest docs/examples/in_memory_test.py
"""

from __future__ import annotations

import uuid

from conveyor.workers.kit.testing import InMemoryConveyor


def new_order(sku: str, quantity: int) -> dict:
    return {"order_id": str(uuid.uuid4()), "customer_id": "customer-42", "currency": "EUR",
            "items": [{"sku": sku, "quantity": quantity, "unit_price": "19.90"}],
            "placed_at": "2026-11-25T10:00:00Z"}


def test_our_checkout_order_is_reserved():
    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 3)

    outcome = conveyor.send("order.created", new_order("SKU-1", 2))

    assert outcome.outcome == "reserved"
    assert conveyor.stock("SKU-1")["available"] == 1
    [event] = conveyor.events("order.reserved")
    assert event["payload"]["total"] == "39.80"


def test_our_float_prices_would_be_dead_lettered():
    order = new_order("SKU-1", 1)
    order["items"][0]["unit_price"] = 19.9

    outcome = InMemoryConveyor().send("order.created", order)

    assert not outcome.accepted
    assert outcome.error_code == "float_number"
