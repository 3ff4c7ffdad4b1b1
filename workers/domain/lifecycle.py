"""The order state machine: which event moves which state where, and what happens to stock.

Pure: a table and one lookup, unit-tested on its own; every handler goes through ``step``.

    RESERVED --payment_authorized--> PAID --shipment_dispatched--> SHIPPED --shipment_delivered--> DELIVERED
    RESERVED --payment_failed | cancel_requested--> CANCELLED   (stock released)
    RESERVED --reservation_expired--> EXPIRED                    (stock released)
    PAID     --cancel_requested--> CANCELLED                     (stock released; refund is upstream's)
    REJECTED, CANCELLED, EXPIRED, DELIVERED are final.

Anything not in the table is one of: *wait* (the prerequisite may still be in flight: retry
later), *refuse* (nothing changes and a refusal event says why), *ignore* (already moot) or
*invalid* (should never happen: dead-letter for an operator).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(str, enum.Enum):
    RESERVED = "RESERVED"
    REJECTED = "REJECTED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class Event(str, enum.Enum):
    PAYMENT_AUTHORIZED = "payment_authorized"
    PAYMENT_FAILED = "payment_failed"
    SHIPMENT_DISPATCHED = "shipment_dispatched"
    SHIPMENT_DELIVERED = "shipment_delivered"
    CANCEL_REQUESTED = "cancel_requested"
    RESERVATION_EXPIRED = "reservation_expired"


class Stock(str, enum.Enum):
    KEEP = "keep"
    RELEASE = "release"   # reserved -= qty
    COMMIT = "commit"     # on_hand -= qty, reserved -= qty


class Kind(str, enum.Enum):
    MOVE = "move"
    WAIT = "wait"
    REFUSE = "refuse"
    IGNORE = "ignore"
    INVALID = "invalid"


@dataclass(frozen=True)
class Step:
    kind: Kind
    to: Status | None = None
    stock: Stock = Stock.KEEP
    event: str | None = None      # routing key published on order-events
    reason: str = ""


S, E = Status, Event
FINAL = frozenset({S.REJECTED, S.CANCELLED, S.EXPIRED, S.DELIVERED})

MOVES: dict[tuple[Status, Event], Step] = {
    (S.RESERVED, E.PAYMENT_AUTHORIZED): Step(Kind.MOVE, S.PAID, Stock.KEEP, "order.paid"),
    (S.RESERVED, E.PAYMENT_FAILED): Step(Kind.MOVE, S.CANCELLED, Stock.RELEASE, "order.cancelled"),
    (S.RESERVED, E.CANCEL_REQUESTED): Step(Kind.MOVE, S.CANCELLED, Stock.RELEASE, "order.cancelled"),
    (S.RESERVED, E.RESERVATION_EXPIRED): Step(Kind.MOVE, S.EXPIRED, Stock.RELEASE, "order.expired"),
    (S.PAID, E.CANCEL_REQUESTED): Step(Kind.MOVE, S.CANCELLED, Stock.RELEASE, "order.cancelled"),
    (S.PAID, E.SHIPMENT_DISPATCHED): Step(Kind.MOVE, S.SHIPPED, Stock.COMMIT, "order.shipped"),
    (S.SHIPPED, E.SHIPMENT_DELIVERED): Step(Kind.MOVE, S.DELIVERED, Stock.KEEP, "order.delivered"),
}

OTHERWISE: dict[tuple[Status, Event], Step] = {
    # Out of order: the message that makes this legal may still be on its way.
    (S.RESERVED, E.SHIPMENT_DISPATCHED): Step(Kind.WAIT, reason="not paid yet"),
    (S.RESERVED, E.SHIPMENT_DELIVERED): Step(Kind.WAIT, reason="not dispatched yet"),
    (S.PAID, E.SHIPMENT_DELIVERED): Step(Kind.WAIT, reason="not dispatched yet"),
    # A payment the order can no longer take: the provider must void or refund it.
    (S.REJECTED, E.PAYMENT_AUTHORIZED): Step(Kind.REFUSE, event="order.payment_refused",
                                             reason="order was rejected"),
    (S.CANCELLED, E.PAYMENT_AUTHORIZED): Step(Kind.REFUSE, event="order.payment_refused",
                                              reason="order was cancelled"),
    (S.EXPIRED, E.PAYMENT_AUTHORIZED): Step(Kind.REFUSE, event="order.payment_refused",
                                            reason="reservation expired before payment"),
    (S.PAID, E.PAYMENT_AUTHORIZED): Step(Kind.REFUSE, event="order.payment_refused",
                                         reason="order is already paid"),
    (S.SHIPPED, E.PAYMENT_AUTHORIZED): Step(Kind.REFUSE, event="order.payment_refused",
                                            reason="order is already paid"),
    (S.DELIVERED, E.PAYMENT_AUTHORIZED): Step(Kind.REFUSE, event="order.payment_refused",
                                              reason="order is already paid"),
    # A cancellation after dispatch changes nothing: the goods are on their way.
    (S.SHIPPED, E.CANCEL_REQUESTED): Step(Kind.REFUSE, event="order.cancel_refused",
                                          reason="already dispatched"),
    (S.DELIVERED, E.CANCEL_REQUESTED): Step(Kind.REFUSE, event="order.cancel_refused",
                                            reason="already delivered"),
    # Shipping goods of an order that never got (or lost) its stock needs a human.
    (S.REJECTED, E.SHIPMENT_DISPATCHED): Step(Kind.INVALID, reason="dispatch of a rejected order"),
    (S.CANCELLED, E.SHIPMENT_DISPATCHED): Step(Kind.INVALID, reason="dispatch of a cancelled order"),
    (S.EXPIRED, E.SHIPMENT_DISPATCHED): Step(Kind.INVALID, reason="dispatch of an expired order"),
    (S.REJECTED, E.SHIPMENT_DELIVERED): Step(Kind.INVALID, reason="delivery of a rejected order"),
    (S.CANCELLED, E.SHIPMENT_DELIVERED): Step(Kind.INVALID, reason="delivery of a cancelled order"),
    (S.EXPIRED, E.SHIPMENT_DELIVERED): Step(Kind.INVALID, reason="delivery of an expired order"),
    (S.SHIPPED, E.PAYMENT_FAILED): Step(Kind.INVALID, reason="payment failed after dispatch"),
    (S.DELIVERED, E.PAYMENT_FAILED): Step(Kind.INVALID, reason="payment failed after delivery"),
}


def step(status: Status, event: Event) -> Step:
    """What ``event`` does to an order in ``status``."""
    found = MOVES.get((status, event)) or OTHERWISE.get((status, event))
    if found is not None:
        return found
    return Step(Kind.IGNORE, reason=f"{event.value} has no effect on a {status.value} order")
