"""The order worker builds its outcome events without validating them a second time
(``model_construct``): every field comes from a message the parser validated or from the
reservation decision. These tests hold it to that: for any valid order, the event it writes
is a valid ``order.reserved`` / ``order.rejected`` whose JSON is exactly what the validating
constructors produce."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.db.intake import Pricing
from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.events import OrderRejected, OrderReserved, RejectedLine, ReservedLine
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message
from conveyor.workers.domain import pricing, reservation
from conveyor.workers.handlers import orders

MONEY = st.from_regex(r"\A[0-9]{1,20}(\.[0-9]{1,4})?\Z")
SKU = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
ITEM = st.fixed_dictionaries({"sku": SKU, "quantity": st.integers(1, 1_000_000), "unit_price": MONEY})


def created(items: list[dict]) -> OrderCreated | None:
    """The parsed order, or None when the parser refuses it (a total of 10^20 or more). In CLF,
    a currency of 4 minor units, so that every price the contract's pattern allows is valid."""
    body = {"order_id": str(uuid.uuid4()), "tenant_id": "shop-1", "customer_id": "c-1", "currency": "CLF",
            "items": items, "placed_at": "2026-11-25T10:00:00+01:00"}
    try:
        return parse_message(json.dumps(body).encode(), OrderCreated, max_bytes=1 << 20)
    except InvalidMessage as refused:
        assert "below 10^20" in refused.detail
        return None


def validated_reserved(message: OrderCreated, occurred_at) -> str:
    return OrderReserved(
        order_id=message.order_id, tenant_id="shop-1", customer_id=message.customer_id,
        currency=message.currency, total=orders.order_total(message), occurred_at=occurred_at,
        lines=[ReservedLine(line_no=n, sku=i.sku, quantity=i.quantity, unit_price=i.unit_price)
               for n, i in enumerate(message.items, start=1)],
        net=orders.order_total(message), tax=Decimal(0), gross=orders.order_total(message)).model_dump_json()


@settings(max_examples=200, deadline=None)
@given(st.lists(ITEM, min_size=1, max_size=5, unique_by=lambda item: item["sku"]))
def test_a_reserved_event_is_what_the_validating_constructor_gives(items: list[dict]) -> None:
    message = created(items)
    if message is None:  # the parser refused it: no event is ever built for it
        assert sum(Decimal(i["unit_price"]) * i["quantity"] for i in items) >= Decimal(10) ** 20
        return
    decision = reservation.ReservationDecision(quantities={i.sku: i.quantity for i in message.items},
                                               rejections=[])
    event = orders._outcome_event(message, "shop-1", decision, pricing.price(message, "shop-1", Pricing()))
    written = json.loads(event.payload)
    occurred_at = OrderReserved.model_validate_json(event.payload).occurred_at
    assert event.routing_key == "order.reserved"
    assert written == json.loads(validated_reserved(message, occurred_at))
    assert Decimal(written["total"]) == sum(Decimal(i["unit_price"]) * i["quantity"] for i in items)


def test_a_rejected_event_is_what_the_validating_constructor_gives() -> None:
    message = created([{"sku": "A", "quantity": 3, "unit_price": "1.50"}, {"sku": "B", "quantity": 1,
                                                                              "unit_price": "2"}])
    assert message is not None
    rejection = reservation.LineRejection(line_no=2, sku="B", requested=1, available=0, reason="insufficient_stock")
    decision = reservation.ReservationDecision(quantities={}, rejections=[rejection])
    event = orders._outcome_event(message, "shop-1", decision, pricing.price(message, "shop-1", Pricing()))
    parsed = OrderRejected.model_validate_json(event.payload)
    expected = OrderRejected(order_id=message.order_id, tenant_id="shop-1", customer_id="c-1",
                             occurred_at=parsed.occurred_at,
                             lines=[RejectedLine(line_no=2, sku="B", requested=1, available=0,
                                                 reason="insufficient_stock")])
    assert json.loads(event.payload) == json.loads(expected.model_dump_json())
