"""What the world around Conveyor does with each order: pure, seeded, no I/O.

Every order gets a *plan* when it is generated. The simulated shop, payment provider and
carrier react to Conveyor's events (``order.reserved``, ``order.paid``, ...) according to
the plan: pay, dispatch, deliver, decline, cancel, abandon, pay twice, send duplicates,
send things out of order or too late, or send an impossible fact. Message ids, payment ids
and shipment ids are derived from the order id, so a reaction repeated after a lost
confirm (or a redelivered event) is the *same* message, as a real at-least-once client
would send it. The bodies come from ``tests/support/lifecycle.py``'s builders.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from tests.support import lifecycle as lifecycle_support

# plan -> weight. Most orders go the happy way; the rest exercise every other rule.
PLANS: dict[str, float] = {
    "deliver": 50,            # pay, dispatch, deliver
    "deliver_dupes": 8,       # the same, every message twice, and repeats under new message ids
    "double_pay": 4,          # two authorizations with different payment ids: one is refused
    "decline": 7,             # payment.failed: cancelled, stock released
    "cancel": 7,              # the shop cancels before payment
    "pay_cancel": 5,          # paid, then cancelled: stock released from PAID
    "late_cancel": 4,         # a cancellation after dispatch: refused, nothing changes
    "abandon": 6,             # never paid: the expirer releases it
    "late_pay": 3,            # paid after it expired: refused (void the authorization)
    "early_dispatch": 3,      # dispatched before paid: waits in the retry tiers
    "wrong_amount": 1.5,      # an authorization that does not match: DLQ, then it expires
    "dispatch_cancelled": 1.5,  # a dispatch of a cancelled order: an impossible fact, DLQ
}
# The events the shop reacts to (its queue is bound to exactly these).
REACTS_TO = ("order.reserved", "order.paid", "order.shipped", "order.cancelled", "order.expired")
EXCHANGES = {
    "order.created": "orders", "order.cancelled": "orders",
    "payment.authorized": "payments", "payment.failed": "payments",
    "shipment.dispatched": "shipments", "shipment.delivered": "shipments",
}


@dataclass(frozen=True)
class Catalogue:
    hot: tuple[str, ...]
    cold: tuple[str, ...]
    initial: dict[str, int]    # sku -> on hand at the start
    prices: dict[str, str]     # sku -> unit price


@dataclass(frozen=True)
class Send:
    """One message to publish; ``copies`` > 1 publishes the very same message again."""

    routing_key: str
    body: dict
    message_id: str
    copies: int = 1

    @property
    def exchange(self) -> str:
        return EXCHANGES[self.routing_key]


def make_catalogue(rng: random.Random, *, hot: int = 3, cold: int = 150, hot_stock: int = 40,
                   cold_stock: int = 100_000) -> Catalogue:
    hot_skus = tuple(f"HOT-{n}" for n in range(1, hot + 1))
    cold_skus = tuple(f"SKU-{n:04d}" for n in range(1, cold + 1))
    initial = {**{s: hot_stock for s in hot_skus}, **{s: cold_stock for s in cold_skus}}
    prices = {s: f"{rng.randint(100, 9999) / 100:.2f}" for s in hot_skus + cold_skus}
    return Catalogue(hot_skus, cold_skus, initial, prices)


def make_order(rng: random.Random, catalogue: Catalogue, *, hot_share: float = 0.35) -> tuple[dict, str]:
    """A new ``order.created`` body and its plan."""
    lines = rng.choice((1, 1, 1, 2, 2, 3))
    skus = rng.sample(catalogue.cold, k=lines)
    if rng.random() < hot_share:
        skus[0] = rng.choice(catalogue.hot)
    body = {
        "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "customer_id": f"customer-{rng.randint(1, 5000)}",
        "currency": "EUR",
        "items": [{"sku": s, "quantity": rng.randint(1, 3), "unit_price": catalogue.prices[s]} for s in skus],
        "placed_at": datetime.now(timezone.utc).isoformat(),
    }
    plan = rng.choices(list(PLANS), weights=list(PLANS.values()))[0]
    return body, plan


def created(order: dict) -> Send:
    return Send("order.created", order, _message_id(order, "created"))


def total(order: dict) -> str:
    return str(sum((Decimal(i["unit_price"]) * i["quantity"] for i in order["items"]), start=Decimal(0)))


def reactions(plan: str, event: str, order: dict) -> list[Send]:
    """What the world sends when Conveyor announces ``event`` for an order with this plan."""
    react = _REACTIONS.get((plan, event))
    return react(order) if react else []


# -- the messages ----------------------------------------------------------------------------

def _message_id(order: dict, what: str) -> str:
    return str(uuid.uuid5(uuid.UUID(order["order_id"]), what))


def _built(built: tuple[str, bytes, str], order: dict, what: str, copies: int = 1) -> Send:
    """A message from ``lifecycle_support``'s builders, with our deterministic message id."""
    routing_key, body, _ = built
    return Send(routing_key, json.loads(body), _message_id(order, what), copies)


def _authorize(order: dict, n: int = 1, *, tag: str = "", amount: str | None = None, copies: int = 1) -> Send:
    built = lifecycle_support.authorized(order, amount=amount or total(order),
                                         payment_id=f"pay-{order['order_id'][:8]}-{n}")
    return _built(built, order, f"authorize:{n}{tag}", copies)


def _decline(order: dict) -> Send:
    return _built(lifecycle_support.failed(order, payment_id=f"pay-{order['order_id'][:8]}-1"), order, "decline")


def _cancel(order: dict, tag: str = "") -> Send:
    reason = f"chaos {tag.lstrip(':') or 'cancel'}"
    return _built(lifecycle_support.cancel(order, reason=reason), order, f"cancel{tag}")


def _dispatch(order: dict, *, copies: int = 1, tag: str = "") -> Send:
    return _built(lifecycle_support.dispatched(order), order, f"dispatch{tag}", copies)


def _deliver(order: dict, *, copies: int = 1, tag: str = "") -> Send:
    return _built(lifecycle_support.delivered(order), order, f"deliver{tag}", copies)


def _wrong_amount(order: dict) -> Send:
    return _authorize(order, amount=str(Decimal(total(order)) + 1))


_REACTIONS = {
    **{(plan, "order.reserved"): (lambda o: [_authorize(o)]) for plan in ("deliver", "late_cancel", "pay_cancel")},
    ("deliver_dupes", "order.reserved"): lambda o: [_authorize(o, copies=2), _authorize(o, tag=":again")],
    ("double_pay", "order.reserved"): lambda o: [_authorize(o, 1), _authorize(o, 2)],
    ("decline", "order.reserved"): lambda o: [_decline(o)],
    ("cancel", "order.reserved"): lambda o: [_cancel(o)],
    ("dispatch_cancelled", "order.reserved"): lambda o: [_cancel(o)],
    ("early_dispatch", "order.reserved"): lambda o: [_dispatch(o), _authorize(o)],
    ("wrong_amount", "order.reserved"): lambda o: [_wrong_amount(o)],
    **{(plan, "order.paid"): (lambda o: [_dispatch(o)]) for plan in ("deliver", "double_pay", "late_cancel")},
    ("deliver_dupes", "order.paid"): lambda o: [_dispatch(o, copies=2), _dispatch(o, tag=":again")],
    ("pay_cancel", "order.paid"): lambda o: [_cancel(o, ":after-payment")],
    **{(plan, "order.shipped"): (lambda o: [_deliver(o)]) for plan in ("deliver", "double_pay", "early_dispatch")},
    ("deliver_dupes", "order.shipped"): lambda o: [_deliver(o, copies=2), _deliver(o, tag=":again")],
    ("late_cancel", "order.shipped"): lambda o: [_cancel(o, ":after-dispatch"), _deliver(o)],
    ("dispatch_cancelled", "order.cancelled"): lambda o: [_dispatch(o)],
    ("late_pay", "order.expired"): lambda o: [_authorize(o)],
}
