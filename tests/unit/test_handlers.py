"""Every handler and every state-machine transition, driven through the real handler functions
against the in-memory unit of work (tests/unit/fakes.py): milliseconds, no servers.

The integration tests run the same handlers against PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from conveyor.db.uow import UnitOfWork
from conveyor.schemas.lifecycle import (
    CancelOrder,
    PaymentAuthorized,
    PaymentFailed,
    ShipmentDelivered,
    ShipmentDispatched,
)
from conveyor.schemas.orders import OrderCreated
from conveyor.schemas.parsing import parse_message
from conveyor.workers.domain import lifecycle
from conveyor.workers.domain.lifecycle import Event, Kind, Status
from conveyor.workers.handlers import orders, payments, shipping, transitions
from conveyor.workers.runtime.failure import PermanentError, RetryableError
from conveyor.workers.runtime.spec import HandlerContext
from tests.unit.fakes import FakeUnitOfWork

TENANT = "default"


def ctx(routing_key: str = "order.created") -> HandlerContext:
    return HandlerContext(message_id=str(uuid.uuid4()), routing_key=routing_key, attempt=1,
                          default_tenant=TENANT)


def created(*items: tuple[str, int], price: str = "10.00", order_id: str | None = None) -> OrderCreated:
    body = {"order_id": order_id or str(uuid.uuid4()), "customer_id": "c-1", "currency": "EUR",
            "items": [{"sku": sku, "quantity": qty, "unit_price": price} for sku, qty in items],
            "placed_at": datetime.now(timezone.utc).isoformat()}
    return parse_message(json.dumps(body).encode(), OrderCreated, max_bytes=1 << 20)


def world(**stock: int) -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    for sku, on_hand in stock.items():
        uow.world.stock[(TENANT, sku)] = [on_hand, 0]
    return uow


def reserve(uow: FakeUnitOfWork, *items: tuple[str, int]) -> OrderCreated:
    message = created(*items)
    assert orders.handle_order_created(message, uow, ctx()) == "reserved"
    return message


def typed(uow: FakeUnitOfWork) -> UnitOfWork:
    return uow  # mypy checks here that the fake satisfies the protocol


# -- order.created ---------------------------------------------------------------------------

def test_an_order_with_enough_stock_is_reserved_and_announced():
    uow = world(A=5, B=5)

    outcome = orders.handle_order_created(created(("A", 2), ("B", 1)), typed(uow), ctx())

    assert outcome == "reserved"
    assert uow.world.level(TENANT, "A") == (5, 2) and uow.world.level(TENANT, "B") == (5, 1)
    (event,) = uow.world.events()
    assert event["routing_key"] == "order.reserved" and event["exchange"] == "order-events"
    assert Decimal(event["payload"]["total"]) == Decimal("30.00")


@pytest.mark.parametrize(("stock", "reason"), [({"A": 5}, "unknown_sku"), ({"A": 5, "B": 0}, "insufficient_stock")])
def test_an_order_that_cannot_be_served_whole_reserves_nothing(stock, reason):
    uow = world(**stock)

    outcome = orders.handle_order_created(created(("A", 2), ("B", 1)), uow, ctx())

    assert outcome == "rejected"
    assert uow.world.level(TENANT, "A") == (5, 0)  # all or nothing
    (event,) = uow.world.events("order.rejected")
    assert [(line["sku"], line["reason"]) for line in event["payload"]["lines"]] == [("B", reason)]


def test_a_sku_on_two_lines_is_reserved_once_for_the_sum():
    uow = world(A=3)

    assert orders.handle_order_created(created(("A", 2), ("A", 2)), uow, ctx()) == "rejected"
    assert orders.handle_order_created(created(("A", 2), ("A", 1)), uow, ctx()) == "reserved"
    assert uow.world.level(TENANT, "A") == (3, 3)


def test_an_order_seen_before_is_a_duplicate_and_changes_nothing():
    uow = world(A=5)
    message = reserve(uow, ("A", 1))

    assert orders.handle_order_created(message, uow, ctx()) == "duplicate_order"
    assert uow.world.level(TENANT, "A") == (5, 1) and len(uow.world.events()) == 1


def test_a_batch_decides_orders_in_turn_against_what_earlier_ones_took():
    uow = world(A=3)
    first, second, third = created(("A", 2)), created(("A", 2)), created(("A", 1))

    outcomes = orders.handle_order_created_batch([(m, ctx()) for m in (first, second, third)], uow)

    assert outcomes == ["reserved", "rejected", "reserved"]
    assert uow.world.level(TENANT, "A") == (3, 3)
    assert [e["routing_key"] for e in uow.world.events()] == ["order.reserved", "order.rejected", "order.reserved"]


def test_a_second_copy_of_an_order_in_the_same_batch_is_a_duplicate():
    uow = world(A=5)
    message = created(("A", 1))

    assert orders.handle_order_created_batch([(message, ctx()), (message, ctx())], uow) == \
        ["reserved", "duplicate_order"]
    assert uow.world.level(TENANT, "A") == (5, 1)


def test_an_empty_batch_does_nothing():
    uow = world(A=5)
    assert orders.handle_order_created_batch([], uow) == []
    assert uow.world.outbox == []


def test_the_tenant_defaults_for_locks_and_stock():
    message = created(("A", 1))
    assert orders.lock_pairs(message, ctx()) == [(TENANT, "A")]


# -- one order's life ------------------------------------------------------------------------

def paid(uow: FakeUnitOfWork, message: OrderCreated, *, payment_id: str = "pay-1") -> str:
    return payments.handle_authorized(PaymentAuthorized(
        order_id=message.order_id, payment_id=payment_id, amount=orders.order_total(message), currency="EUR"),
        uow, ctx("payment.authorized"))


def dispatched(uow: FakeUnitOfWork, message: OrderCreated, *, shipment_id: str = "ship-1") -> str:
    return shipping.handle_dispatched(ShipmentDispatched(
        order_id=message.order_id, shipment_id=shipment_id, carrier="DHL", tracking_number="T-1"),
        uow, ctx("shipment.dispatched"))


def delivered(uow: FakeUnitOfWork, message: OrderCreated, *, shipment_id: str = "ship-1") -> str:
    return shipping.handle_delivered(ShipmentDelivered(order_id=message.order_id, shipment_id=shipment_id),
                                     uow, ctx("shipment.delivered"))


def cancelled(uow: FakeUnitOfWork, message: OrderCreated) -> str:
    return orders.handle_cancel(CancelOrder(order_id=message.order_id, reason="changed mind"), uow,
                                ctx("order.cancelled"))


def failed(uow: FakeUnitOfWork, message: OrderCreated, *, payment_id: str = "pay-9") -> str:
    return payments.handle_failed(PaymentFailed(order_id=message.order_id, payment_id=payment_id,
                                                reason="card declined"), uow, ctx("payment.failed"))


def status(uow: FakeUnitOfWork, message: OrderCreated) -> str:
    return uow.world.orders[message.order_id].status


def test_the_happy_path_pays_ships_and_delivers_and_commits_the_stock():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))

    assert (paid(uow, message), dispatched(uow, message), delivered(uow, message)) == ("paid", "shipped", "delivered")

    assert status(uow, message) == "DELIVERED"
    assert uow.world.level(TENANT, "A") == (3, 0)  # the goods left: on hand and reserved both went down
    assert [e["routing_key"] for e in uow.world.events()][1:] == ["order.paid", "order.shipped", "order.delivered"]


def test_a_payment_that_does_not_match_the_total_is_a_permanent_error():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))

    with pytest.raises(PermanentError, match="does not match"):
        payments.handle_authorized(PaymentAuthorized(order_id=message.order_id, payment_id="p", amount=Decimal("1.00"),
                                                     currency="EUR"), uow, ctx("payment.authorized"))
    assert status(uow, message) == "RESERVED"


def test_a_repeated_payment_id_is_a_duplicate():
    uow = world(A=5)
    message = reserve(uow, ("A", 1))
    paid(uow, message)

    assert paid(uow, message) == "duplicate_payment"
    assert status(uow, message) == "PAID" and len(uow.world.events("order.payment_refused")) == 0


def test_a_second_authorization_with_another_id_is_refused():
    uow = world(A=5)
    message = reserve(uow, ("A", 1))
    paid(uow, message)

    assert paid(uow, message, payment_id="pay-2") == "refused"
    (refusal,) = uow.world.events("order.payment_refused")
    assert refusal["payload"]["reason"] == "order is already paid"


def test_a_message_about_an_order_not_seen_yet_is_retried_later():
    uow = world(A=5)
    with pytest.raises(RetryableError, match="not known yet"):
        paid(uow, created(("A", 1)))


def test_a_failed_payment_cancels_the_order_and_releases_its_stock():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))

    assert failed(uow, message) == "cancelled"
    assert status(uow, message) == "CANCELLED" and uow.world.level(TENANT, "A") == (5, 0)


def test_a_repeated_failed_payment_is_a_duplicate():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))
    failed(uow, message)
    assert failed(uow, message) == "duplicate_payment"


def test_the_shop_cancels_before_dispatch_and_the_stock_comes_back():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))
    paid(uow, message)

    assert cancelled(uow, message) == "cancelled"
    assert uow.world.level(TENANT, "A") == (5, 0)


def test_a_cancellation_after_dispatch_is_refused_and_changes_nothing():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))
    paid(uow, message)
    dispatched(uow, message)

    assert cancelled(uow, message) == "refused"
    assert status(uow, message) == "SHIPPED" and uow.world.level(TENANT, "A") == (3, 0)
    assert uow.world.events("order.cancel_refused")[0]["payload"]["reason"] == "already dispatched"


def test_a_repeated_shipment_event_is_a_duplicate():
    uow = world(A=5)
    message = reserve(uow, ("A", 1))
    paid(uow, message)
    dispatched(uow, message)
    assert dispatched(uow, message) == "duplicate_shipment"
    delivered(uow, message)
    assert delivered(uow, message) == "duplicate_shipment"


def test_an_unpaid_order_expires_and_releases_its_stock_once():
    uow = world(A=5)
    message = reserve(uow, ("A", 2))

    assert transitions.expire(uow, message.order_id, reason="not paid within 60s") == "expired"
    assert transitions.expire(uow, message.order_id, reason="not paid within 60s") is None
    assert status(uow, message) == "EXPIRED" and uow.world.level(TENANT, "A") == (5, 0)
    assert uow.world.events("order.expired")[0]["payload"]["reason"] == "not paid within 60s"


def test_the_lock_query_names_the_orders_reserved_skus():
    uow = world(A=5, B=5)
    message = reserve(uow, ("A", 1), ("B", 1))
    assert sorted(transitions.reservation_lock_pairs(message, uow)) == [(TENANT, "A"), (TENANT, "B")]


# -- every (status, event) of the state machine, through transitions.apply -------------------

Step = Callable[[FakeUnitOfWork, OrderCreated], object] | str
ROUTE_TO: dict[Status, list[Step]] = {  # how each status is reached through the handlers
    Status.RESERVED: [], Status.PAID: [paid], Status.SHIPPED: [paid, dispatched],
    Status.DELIVERED: [paid, dispatched, delivered], Status.CANCELLED: [cancelled],
    Status.EXPIRED: ["expire"],
}


def order_in(state: Status) -> tuple[FakeUnitOfWork, OrderCreated]:
    uow = world(A=5)
    if state is Status.REJECTED:
        message = created(("NO-SUCH", 1))
        assert orders.handle_order_created(message, uow, ctx()) == "rejected"
        return uow, message
    message = reserve(uow, ("A", 2))
    for step in ROUTE_TO[state]:
        if isinstance(step, str):  # "expire": the expirer's step, not a message
            transitions.expire(uow, message.order_id, reason="test")
        else:
            step(uow, message)
    assert status(uow, message) == state.value
    return uow, message


@pytest.mark.parametrize("state", list(Status))
@pytest.mark.parametrize("event", list(Event))
def test_every_transition_does_what_the_table_says(state, event):
    uow, message = order_in(state)
    before_stock, before_events = uow.world.level(TENANT, "A"), len(uow.world.outbox)
    order = uow.order_states.lock(message.order_id)
    assert order is not None
    planned = lifecycle.step(state, event)

    if planned.kind is Kind.WAIT:
        with pytest.raises(RetryableError):
            transitions.apply(uow, order, event, transitions.Details())
        return
    if planned.kind is Kind.INVALID:
        with pytest.raises(PermanentError):
            transitions.apply(uow, order, event, transitions.Details())
        return
    outcome = transitions.apply(uow, order, event, transitions.Details(reason="r"))

    new_events = uow.world.outbox[before_events:]
    if planned.kind is Kind.IGNORE:
        assert (outcome, status(uow, message), new_events) == ("ignored", state.value, [])
    elif planned.kind is Kind.REFUSE:
        assert outcome == "refused" and status(uow, message) == state.value
        assert [e["routing_key"] for e in new_events] == [planned.event]
        assert uow.world.level(TENANT, "A") == before_stock
    else:
        assert planned.to is not None
        assert (outcome, status(uow, message)) == (planned.to.value.lower(), planned.to.value)
        assert [e["routing_key"] for e in new_events] == [planned.event]
        assert new_events[0]["payload"]["previous_status"] == state.value
        on_hand, reserved = before_stock
        held = 2 if state is not Status.REJECTED else 0
        expected = {lifecycle.Stock.KEEP: before_stock, lifecycle.Stock.RELEASE: (on_hand, reserved - held),
                    lifecycle.Stock.COMMIT: (on_hand - held, reserved - held)}[planned.stock]
        assert uow.world.level(TENANT, "A") == expected


# -- customers' personal data ------------------------------------------------------------------

def test_customer_data_goes_to_the_unit_of_work_flat_and_never_into_an_event():
    uow = world(A=5, B=0)
    customer = {"email": "ada@example.org", "phone": "+44 20 7946 0000",
                "shipping_address": {"line1": "12 Square", "city": "London", "country": "GB"}}
    messages = []
    for sku in ("A", "B"):  # one reserved, one rejected: both orders are recorded with their customer
        body = json.loads(created((sku, 1)).model_dump_json())
        body["customer"] = customer
        messages.append(parse_message(json.dumps(body).encode(), OrderCreated, max_bytes=1 << 20))

    outcomes = orders.handle_order_created_batch([(m, ctx()) for m in messages], typed(uow))

    assert outcomes == ["reserved", "rejected"]
    assert [c.order_id for c in uow.world.customers] == [m.order_id for m in messages]
    assert uow.world.customers[0].fields == {
        "email": "ada@example.org", "phone": "+44 20 7946 0000", "shipping_address.line1": "12 Square",
        "shipping_address.city": "London", "shipping_address.country": "GB"}
    assert all("ada@example.org" not in json.dumps(event, default=str) for event in uow.world.outbox)


def test_an_order_without_customer_data_stores_none():
    uow = world(A=5)
    reserve(uow, ("A", 1))
    assert uow.world.customers == []
