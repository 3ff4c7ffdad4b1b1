"""The order state machine on its own: every legal move, and what each illegal pair does."""

from __future__ import annotations

import itertools

import pytest

from conveyor.workers.domain.lifecycle import FINAL, MOVES, Event, Kind, Status, Stock, step

S, E = Status, Event

LEGAL = [
    (S.RESERVED, E.PAYMENT_AUTHORIZED, S.PAID, Stock.KEEP, "order.paid"),
    (S.RESERVED, E.PAYMENT_FAILED, S.CANCELLED, Stock.RELEASE, "order.cancelled"),
    (S.RESERVED, E.CANCEL_REQUESTED, S.CANCELLED, Stock.RELEASE, "order.cancelled"),
    (S.RESERVED, E.RESERVATION_EXPIRED, S.EXPIRED, Stock.RELEASE, "order.expired"),
    (S.PAID, E.CANCEL_REQUESTED, S.CANCELLED, Stock.RELEASE, "order.cancelled"),
    (S.PAID, E.SHIPMENT_DISPATCHED, S.SHIPPED, Stock.COMMIT, "order.shipped"),
    (S.SHIPPED, E.SHIPMENT_DELIVERED, S.DELIVERED, Stock.KEEP, "order.delivered"),
]


@pytest.mark.parametrize("status, event, to, stock, routing_key", LEGAL)
def test_every_legal_transition_moves_settles_stock_and_announces(status, event, to, stock, routing_key):
    result = step(status, event)

    assert (result.kind, result.to, result.stock, result.event) == (Kind.MOVE, to, stock, routing_key)


def test_the_table_holds_exactly_the_legal_transitions():
    assert {(s, e) for s, e, *_ in LEGAL} == set(MOVES)


@pytest.mark.parametrize("status, event, kind", [
    # out of order: wait for the message that makes it legal
    (S.RESERVED, E.SHIPMENT_DISPATCHED, Kind.WAIT),
    (S.RESERVED, E.SHIPMENT_DELIVERED, Kind.WAIT),
    (S.PAID, E.SHIPMENT_DELIVERED, Kind.WAIT),
    # a payment the order cannot take any more
    (S.EXPIRED, E.PAYMENT_AUTHORIZED, Kind.REFUSE),
    (S.CANCELLED, E.PAYMENT_AUTHORIZED, Kind.REFUSE),
    (S.REJECTED, E.PAYMENT_AUTHORIZED, Kind.REFUSE),
    (S.PAID, E.PAYMENT_AUTHORIZED, Kind.REFUSE),
    # cancellation after dispatch is refused
    (S.SHIPPED, E.CANCEL_REQUESTED, Kind.REFUSE),
    (S.DELIVERED, E.CANCEL_REQUESTED, Kind.REFUSE),
    # shipping what is not ours to ship needs an operator
    (S.CANCELLED, E.SHIPMENT_DISPATCHED, Kind.INVALID),
    (S.EXPIRED, E.SHIPMENT_DISPATCHED, Kind.INVALID),
    (S.REJECTED, E.SHIPMENT_DISPATCHED, Kind.INVALID),
    (S.SHIPPED, E.PAYMENT_FAILED, Kind.INVALID),
    # moot: already settled
    (S.CANCELLED, E.CANCEL_REQUESTED, Kind.IGNORE),
    (S.EXPIRED, E.CANCEL_REQUESTED, Kind.IGNORE),
    (S.PAID, E.RESERVATION_EXPIRED, Kind.IGNORE),
    (S.EXPIRED, E.RESERVATION_EXPIRED, Kind.IGNORE),
    (S.PAID, E.PAYMENT_FAILED, Kind.IGNORE),
    (S.SHIPPED, E.SHIPMENT_DISPATCHED, Kind.IGNORE),
])
def test_illegal_pairs_never_move_the_order(status, event, kind):
    result = step(status, event)

    assert result.kind is kind
    assert result.to is None and result.stock is Stock.KEEP


@pytest.mark.parametrize("status, event", list(itertools.product(sorted(FINAL), list(Event))))
def test_final_states_are_final(status, event):
    assert step(status, event).kind is not Kind.MOVE


def test_every_refusal_says_why_and_what_to_publish():
    for status, event in itertools.product(Status, Event):
        result = step(status, event)
        if result.kind is Kind.REFUSE:
            assert result.reason and result.event in ("order.payment_refused", "order.cancel_refused")
