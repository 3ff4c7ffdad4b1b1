"""The simulated world's plans: deterministic, so a resent reaction is the same message."""

from __future__ import annotations

import random

from tests.chaos import plans


def an_order(seed: int = 1) -> dict:
    catalogue = plans.make_catalogue(random.Random(seed))
    order, _ = plans.make_order(random.Random(seed), catalogue)
    return order


def test_a_reaction_computed_twice_is_the_same_message():
    # Given an order whose event was delivered twice (the relay publishes at least once)
    order = an_order()
    # When the world reacts to it again
    first = plans.reactions("deliver_dupes", "order.reserved", order)
    again = plans.reactions("deliver_dupes", "order.reserved", order)
    # Then it sends the very same messages: same ids, same bodies
    assert first == again
    assert [s.copies for s in first] == [2, 1]
    assert first[0].message_id != first[1].message_id
    assert first[0].body["payment_id"] == first[1].body["payment_id"]


def test_every_plan_ends_its_happy_path_or_says_why_not():
    order = an_order(2)
    sent = {plan: [s.routing_key for e in plans.REACTS_TO for s in plans.reactions(plan, e, order)]
            for plan in plans.PLANS}
    assert sent["deliver"] == ["payment.authorized", "shipment.dispatched", "shipment.delivered"]
    assert sent["abandon"] == []
    assert sent["late_pay"] == ["payment.authorized"]
    assert sent["dispatch_cancelled"] == ["order.cancelled", "shipment.dispatched"]
    assert all(s.exchange for e in plans.REACTS_TO for p in plans.PLANS for s in plans.reactions(p, e, order))


def test_a_wrong_amount_differs_from_the_total_by_one():
    order = an_order(3)
    [wrong] = plans.reactions("wrong_amount", "order.reserved", order)
    [right] = plans.reactions("deliver", "order.reserved", order)
    assert float(wrong.body["amount"]) == float(right.body["amount"]) + 1
    assert right.body["amount"] == plans.total(order)
