"""The reservation decision: every line or none, with a reason for each short line."""

from __future__ import annotations

import pytest

from conveyor.db.stock import StockLevel
from conveyor.workers.domain.reservation import LineRejection, LineRequest, decide, quantities_per_sku


def stock(**levels: tuple[int, int]) -> dict[str, StockLevel]:
    """stock(A=(on_hand, reserved), ...)"""
    return {sku: StockLevel(sku, on_hand, reserved) for sku, (on_hand, reserved) in levels.items()}


def test_an_order_within_stock_is_accepted_with_per_sku_quantities() -> None:
    # Given two lines, both in stock
    lines = [LineRequest(1, "A", 2), LineRequest(2, "B", 3)]

    # When the decision is taken
    decision = decide(lines, stock(A=(10, 0), B=(5, 0)))

    # Then everything is reserved
    assert decision.accepted
    assert decision.rejections == []
    assert decision.quantities == {"A": 2, "B": 3}


def test_exact_stock_is_accepted() -> None:
    decision = decide([LineRequest(1, "A", 5)], stock(A=(5, 0)))
    assert decision.accepted
    assert decision.quantities == {"A": 5}


def test_one_short_line_rejects_the_whole_order() -> None:
    # Given three lines, only the second of which is short
    lines = [LineRequest(1, "A", 1), LineRequest(2, "B", 4), LineRequest(3, "C", 1)]

    # When the decision is taken
    decision = decide(lines, stock(A=(10, 0), B=(3, 0), C=(10, 0)))

    # Then the order is rejected, and only the short line says why
    assert not decision.accepted
    assert decision.rejections == [LineRejection(2, "B", requested=4, available=3, reason="insufficient_stock")]


def test_unknown_and_insufficient_lines_get_their_own_reasons() -> None:
    # Given a line for a SKU that does not exist and one for a SKU that is short
    lines = [LineRequest(1, "GHOST", 1), LineRequest(2, "B", 2), LineRequest(3, "A", 1)]

    # When the decision is taken
    decision = decide(lines, stock(A=(1, 0), B=(1, 0)))

    # Then each line carries its reason; an unknown SKU has nothing available
    assert decision.rejections == [
        LineRejection(1, "GHOST", requested=1, available=0, reason="unknown_sku"),
        LineRejection(2, "B", requested=2, available=1, reason="insufficient_stock"),
    ]


def test_a_sku_on_two_lines_is_checked_against_the_sum() -> None:
    # Given the same SKU on two lines, each within stock but not together
    lines = [LineRequest(1, "A", 3), LineRequest(2, "A", 3)]

    # When the decision is taken
    decision = decide(lines, stock(A=(5, 0)))

    # Then both lines are rejected, each reporting its own request
    assert not decision.accepted
    assert decision.rejections == [
        LineRejection(1, "A", requested=3, available=5, reason="insufficient_stock"),
        LineRejection(2, "A", requested=3, available=5, reason="insufficient_stock"),
    ]


def test_a_sku_on_two_lines_is_reserved_once_for_the_sum() -> None:
    decision = decide([LineRequest(1, "A", 3), LineRequest(2, "B", 1), LineRequest(3, "A", 2)],
                      stock(A=(5, 0), B=(1, 0)))
    assert decision.accepted
    assert decision.quantities == {"A": 5, "B": 1}


@pytest.mark.parametrize(
    ("on_hand", "reserved", "requested", "accepted", "available"),
    [
        (10, 7, 3, True, None),     # exactly what is left after other reservations
        (10, 7, 4, False, 3),       # one more than is left
        (10, 10, 1, False, 0),      # all reserved already
        (5, 8, 1, False, 0),        # over-reserved stock reports zero, never a negative
    ],
)
def test_available_stock_counts_what_is_already_reserved(
    on_hand: int, reserved: int, requested: int, accepted: bool, available: int | None,
) -> None:
    # Given stock partly reserved by other orders
    levels = stock(A=(on_hand, reserved))

    # When a line asks for some of it
    decision = decide([LineRequest(1, "A", requested)], levels)

    # Then only on_hand - reserved counts as available
    assert decision.accepted is accepted
    if not accepted:
        assert decision.rejections == [
            LineRejection(1, "A", requested=requested, available=available, reason="insufficient_stock")]


def test_quantities_per_sku_sums_repeated_skus() -> None:
    lines = [LineRequest(1, "A", 1), LineRequest(2, "B", 2), LineRequest(3, "A", 4)]
    assert quantities_per_sku(lines) == {"A": 5, "B": 2}
