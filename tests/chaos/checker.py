"""The invariant checker: a pure function of the history and the final state, in the style
of Jepsen's queue and bank checkers. It knows Conveyor's *contract* (README), not its code:
the state machine below is written out again on purpose.

Each check returns the offending items (with their ids); a run passes when every list is
empty.

- ``lost``: a confirmed ``order.created`` whose order is neither stored nor dead-lettered;
  any confirmed message neither processed (inbox) nor dead-lettered; a committed stock
  change missing from the ledger; a dead letter without a reason.
- ``phantom``: an effect nobody asked for: an order, payment or processed message that no
  client sent, or one whose operation certainly failed.
- ``unfinished``: an order not in a final state although everything it needed was
  delivered (no message about it dead-lettered, no send of ours left uncertain).
- ``state_machine``: an order stored more than once, or whose transitions do not chain
  through legal moves to its status (so at most one final state).
- ``duplicates``: a message processed twice, a payment recorded twice, two captures of an
  order, reservations that differ from the order's lines, stock released or committed
  twice for an order, an order event announced twice.
- ``oversell``: any sampled or final stock level outside 0 <= reserved <= on_hand.
- ``relay_inventory``: per SKU, the partner's versions (duplicates removed) are exactly
  1..the database's version, in order, each with the ledger's levels.
- ``relay_orders``: per order, the partner saw each state change once, in order, and one
  ``order.payment_refused`` per refused payment.
- ``conservation``: per SKU, on hand = initial + stock changes - committed shipments,
  reserved = live reservations; ``conveyor reconcile`` finds nothing.
- ``drained``: after healing, every queue and the outbox emptied.
- ``crashes``: a worker process exited without being killed, or a clean stop (SIGTERM)
  did not exit 0.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tests.chaos.history import Operation, counts
from tests.support.relay import first_copies

FINAL = frozenset({"REJECTED", "CANCELLED", "EXPIRED", "DELIVERED"})
LEGAL_MOVES = frozenset({
    ("RESERVED", "PAID"), ("RESERVED", "CANCELLED"), ("RESERVED", "EXPIRED"),
    ("PAID", "CANCELLED"), ("PAID", "SHIPPED"), ("SHIPPED", "DELIVERED"),
})
STATUS_EVENT = {"PAID": "order.paid", "CANCELLED": "order.cancelled", "SHIPPED": "order.shipped",
                "DELIVERED": "order.delivered", "EXPIRED": "order.expired"}
DECISION_EVENT = {"RESERVED": "order.reserved", "REJECTED": "order.rejected"}
STATUS_EVENTS = frozenset(STATUS_EVENT.values()) | frozenset(DECISION_EVENT.values())
MESSAGES = frozenset({"order.created", "order.cancelled", "payment.authorized", "payment.failed",
                      "shipment.dispatched", "shipment.delivered"})
# Ledger causes that belong to exactly one order and may appear once per SKU.
SETTLING_CAUSES = ("order.cancelled:", "order.expired:", "order.shipped:")
ADJUST_CAUSE = "chaos-adjust:"
STOCK_SET_CAUSE = "stock-set:"


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str | None
    routing_key: str
    reason: str | None
    order_id: str | None


@dataclass(frozen=True)
class Delivered:
    """One message as a partner received it, in arrival order."""

    message_id: str
    routing_key: str
    body: dict


@dataclass(frozen=True)
class Movement:
    sku: str
    version: int
    delta_on_hand: int
    delta_reserved: int
    on_hand: int
    reserved: int
    cause: str


@dataclass
class FinalState:
    orders: dict[str, str] = field(default_factory=dict)           # order id -> status
    order_rows: dict[str, int] = field(default_factory=dict)       # order id -> rows in orders
    registry: set[str] = field(default_factory=set)
    lines: dict[str, dict[str, int]] = field(default_factory=dict)  # order id -> sku -> quantity
    reservations: list[tuple[str, str, int, str]] = field(default_factory=list)  # order, sku, qty, state
    inbox: dict[str, int] = field(default_factory=dict)            # message id -> rows
    payments: list[tuple[str, str, str]] = field(default_factory=list)  # payment id, order, outcome
    transitions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # order -> [(from, to)]
    stock: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # sku -> on hand, reserved, version
    ledger: list[Movement] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    inventory_feed: list[Delivered] = field(default_factory=list)
    order_feed: list[Delivered] = field(default_factory=list)
    reconcile: dict[str, list] = field(default_factory=dict)
    not_drained: dict[str, int] = field(default_factory=dict)      # queue (or "outbox") -> left
    oversell_samples: list[dict] = field(default_factory=list)
    stock_samples: int = 0


@dataclass
class Verdict:
    problems: dict[str, list[str]]
    stats: dict

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def summary(self, *, limit: int = 20) -> str:
        lines = [f"verdict: {'PASS' if self.ok else 'FAIL'}"]
        for name, items in self.problems.items():
            lines.append(f"  {name}: {'ok' if not items else f'{len(items)} problem(s)'}")
            lines += [f"    - {item}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
        return "\n".join(lines)


def check(ops: list[Operation], state: FinalState, *, initial: dict[str, int]) -> Verdict:
    sent = [op for op in ops if op.f in MESSAGES]
    adjusts = [op for op in ops if op.f == "stock.adjust"]
    problems = {
        "lost": lost(sent, adjusts, state),
        "phantom": phantom(sent, adjusts, state),
        "unfinished": unfinished(sent, state),
        "state_machine": state_machine(state),
        "duplicates": duplicates(state),
        "oversell": oversell(state),
        "relay_inventory": relay_inventory(state),
        "relay_orders": relay_orders(state),
        "conservation": conservation(adjusts, state, initial=initial),
        "drained": [f"{name}: {left} left" for name, left in sorted(state.not_drained.items()) if left],
        "crashes": [f"{op.value.get('process')} exited with {op.value.get('code')} at {op.invoked_at:.1f}s "
                    f"(log {op.value.get('log')})" for op in ops if op.process == "cluster" and op.f == "crash"],
    }
    return Verdict(problems, stats(ops, state))


# -- the checks ------------------------------------------------------------------------------

def lost(sent: list[Operation], adjusts: list[Operation], state: FinalState) -> list[str]:
    dead = {letter.message_id for letter in state.dead_letters}
    problems = []
    for op in sent:
        if op.outcome != "ok":
            continue
        message_id, order_id = op.value["message_id"], op.value.get("order_id")
        if op.f == "order.created" and order_id not in state.orders and message_id not in dead:
            problems.append(f"order {order_id}: order.created {message_id} confirmed, order neither stored "
                            "nor dead-lettered")
        elif message_id not in state.inbox and message_id not in dead:
            problems.append(f"order {order_id}: {op.f} {message_id} confirmed, neither processed nor dead-lettered")
    applied = _adjust_movements(state)
    problems += [f"stock change {op.op} ({op.value['sku']} {op.value['delta']:+d}) committed, not in the ledger"
                 for op in adjusts if op.outcome == "ok" and op.op not in applied]
    problems += [f"dead letter {letter.message_id} ({letter.routing_key}) in {letter.queue} has no reason"
                 for letter in state.dead_letters if not letter.reason]
    return problems


def phantom(sent: list[Operation], adjusts: list[Operation], state: FinalState) -> list[str]:
    placed = {op.value["order_id"] for op in sent if op.f == "order.created"}
    failed_orders = {op.value["order_id"] for op in sent if op.f == "order.created" and op.outcome == "fail"}
    ours = {op.value["message_id"] for op in sent}
    failed = {op.value["message_id"] for op in sent if op.outcome == "fail"}
    payment_ids = {op.value["payment_id"] for op in sent if "payment_id" in op.value}
    problems = [f"order {o} stored, nobody placed it" for o in sorted(set(state.orders) - placed)]
    problems += [f"order {o} stored, its order.created certainly failed"
                 for o in sorted(failed_orders & set(state.orders))]
    problems += [f"message {m} processed, nobody sent it" for m in sorted(set(state.inbox) - ours)]
    problems += [f"message {m} processed, its publish certainly failed" for m in sorted(failed & set(state.inbox))]
    problems += [f"payment {p} recorded, nobody sent it" for p, _, _ in state.payments if p not in payment_ids]
    applied = _adjust_movements(state)
    problems += [f"stock change {op.op} failed but is in the ledger" for op in adjusts
                 if op.outcome == "fail" and op.op in applied]
    return problems


def unfinished(sent: list[Operation], state: FinalState) -> list[str]:
    explained = {letter.order_id for letter in state.dead_letters}
    explained |= {op.value.get("order_id") for op in sent if op.outcome != "ok"}
    return [f"order {order_id} ended {status}" for order_id, status in sorted(state.orders.items())
            if status not in FINAL and order_id not in explained]


def state_machine(state: FinalState) -> list[str]:
    problems = [f"order {o} stored {n} times" for o, n in sorted(state.order_rows.items()) if n != 1]
    problems += [f"order {o} stored without its registry row" for o in sorted(set(state.orders) - state.registry)]
    for order_id, status in sorted(state.orders.items()):
        moves = state.transitions.get(order_id, [])
        current = "RESERVED" if moves or status != "REJECTED" else "REJECTED"
        for from_status, to_status in moves:
            if from_status != current or (from_status, to_status) not in LEGAL_MOVES:
                problems.append(f"order {order_id}: transitions {moves} break the state machine")
                break
            current = to_status
        else:
            if current != status:
                problems.append(f"order {order_id}: transitions end in {current}, the order is {status}")
    return problems


def duplicates(state: FinalState) -> list[str]:
    problems = [f"message {m} in the inbox {n} times" for m, n in sorted(state.inbox.items()) if n > 1]
    per_payment = Counter(p for p, _, _ in state.payments)
    problems += [f"payment {p} recorded {n} times" for p, n in sorted(per_payment.items()) if n > 1]
    captures = Counter(o for _, o, outcome in state.payments if outcome == "authorized")
    problems += [f"order {o} captured {n} payments" for o, n in sorted(captures.items()) if n > 1]
    problems += _reservation_problems(state)
    settled = Counter((m.cause, m.sku) for m in state.ledger if m.cause.startswith(SETTLING_CAUSES))
    problems += [f"stock of {sku} moved {n} times for {cause}" for (cause, sku), n in sorted(settled.items()) if n > 1]
    return problems


def _reservation_problems(state: FinalState) -> list[str]:
    held: dict[str, Counter] = defaultdict(Counter)
    rows = Counter((order_id, sku) for order_id, sku, _, _ in state.reservations)
    problems = [f"order {o}: {n} reservations of {sku}" for (o, sku), n in sorted(rows.items()) if n > 1]
    for order_id, sku, quantity, _ in state.reservations:
        held[order_id][sku] += quantity
    for order_id, status in sorted(state.orders.items()):
        expected = {} if status == "REJECTED" else state.lines.get(order_id, {})
        if dict(held.get(order_id, {})) != expected:
            problems.append(f"order {order_id} ({status}): reservations {dict(held.get(order_id, {}))}, "
                            f"lines {expected}")
    return problems


def oversell(state: FinalState) -> list[str]:
    problems = [f"sampled {s}" for s in state.oversell_samples]
    problems += [f"{sku}: on hand {on_hand}, reserved {reserved}" for sku, (on_hand, reserved, _) in
                 sorted(state.stock.items()) if on_hand < 0 or reserved < 0 or reserved > on_hand]
    return problems


def relay_inventory(state: FinalState) -> list[str]:
    problems = _same_id_same_body(state.inventory_feed)
    levels = {(m.sku, m.version): (m.on_hand, m.reserved) for m in state.ledger}
    seen: dict[str, list[int]] = defaultdict(list)
    for message in first_copies(state.inventory_feed):
        sku, version, level = message.body["sku"], message.body["version"], (
            message.body["on_hand"], message.body["reserved"])
        seen[sku].append(version)
        recorded = levels.get((sku, version))
        if recorded is not None and recorded != level:
            problems.append(f"{sku} v{version}: partner got on hand/reserved {level}, the ledger says {recorded}")
    for sku, (_, _, version) in sorted(state.stock.items()):
        versions = seen.get(sku, [])
        if versions != sorted(versions):
            problems.append(f"{sku}: versions out of order {_short(versions)}")
        if sorted(versions) != list(range(1, version + 1)):
            missing = sorted(set(range(1, version + 1)) - set(versions))
            extra = sorted(set(versions) - set(range(1, version + 1)))
            problems.append(f"{sku}: database at v{version}, partner's last v{max(versions, default=0)}, "
                            f"missing {_short(missing)}, unexpected {_short(extra)}")
    problems += [f"{sku}: partner got changes of a SKU the database does not have"
                 for sku in sorted(set(seen) - set(state.stock))]
    return problems


def relay_orders(state: FinalState) -> list[str]:
    problems = _same_id_same_body(state.order_feed)
    got: dict[str, list[str]] = defaultdict(list)
    for message in first_copies(state.order_feed):
        got[message.body["order_id"]].append(message.routing_key)
    refused = Counter(o for _, o, outcome in state.payments if outcome == "refused")
    for order_id, status in sorted(state.orders.items()):
        decision = "REJECTED" if status == "REJECTED" else "RESERVED"
        expected = [DECISION_EVENT[decision]] + [STATUS_EVENT[to] for _, to in state.transitions.get(order_id, [])]
        events = [key for key in got.get(order_id, []) if key in STATUS_EVENTS]
        if events != expected:
            problems.append(f"order {order_id}: partner saw {events}, the order went {expected}")
        refusals = got.get(order_id, []).count("order.payment_refused")
        if refusals != refused[order_id]:
            problems.append(f"order {order_id}: {refusals} order.payment_refused for {refused[order_id]} "
                            "refused payments")
    problems += [f"order {o}: events for an order the database does not have"
                 for o in sorted(set(got) - set(state.orders))]
    return problems


def conservation(adjusts: list[Operation], state: FinalState, *, initial: dict[str, int]) -> list[str]:
    applied = _adjust_movements(state)
    delta: Counter = Counter()
    problems = []
    for op in adjusts:
        movement = applied.get(op.op)
        if movement is None:
            continue
        if op.outcome == "fail" or movement.delta_on_hand != op.value["delta"]:
            problems.append(f"stock change {op.op} ({op.outcome}, {op.value['delta']:+d}) moved "
                            f"{movement.delta_on_hand:+d} in the ledger")
        delta[op.value["sku"]] += op.value["delta"]
    for m in state.ledger:
        if m.cause.startswith(STOCK_SET_CAUSE):
            delta[m.sku] += m.delta_on_hand
    committed, held = Counter(), Counter()
    for _, sku, quantity, reservation_state in state.reservations:
        if reservation_state == "COMMITTED":
            committed[sku] += quantity
        elif reservation_state == "HELD":
            held[sku] += quantity
    for sku, (on_hand, reserved, _) in sorted(state.stock.items()):
        expected = initial.get(sku, 0) + delta[sku] - committed[sku]
        if on_hand != expected:
            problems.append(f"{sku}: on hand {on_hand}, expected {expected} = initial {initial.get(sku, 0)} "
                            f"{delta[sku]:+d} changes - {committed[sku]} shipped")
        if reserved != held[sku]:
            problems.append(f"{sku}: reserved {reserved}, live reservations hold {held[sku]}")
    problems += [f"reconcile {name}: {rows[:5]}" for name, rows in sorted(state.reconcile.items()) if rows]
    return problems


# -- helpers ---------------------------------------------------------------------------------

def stats(ops: list[Operation], state: FinalState) -> dict:
    return {
        "operations": counts([op for op in ops if op.process not in ("nemesis", "cluster")]),
        "restarts": sum(1 for op in ops if op.process == "cluster" and op.f == "restart"),
        "faults": dict(sorted(Counter(op.f for op in ops if op.process == "nemesis" and
                                      not op.f.startswith(("heal ", "skipped ", "error "))).items())),
        "orders_by_status": dict(sorted(Counter(state.orders.values()).items())),
        "dead_letters_by_reason": dict(sorted(Counter(
            f"{d.routing_key}: {(d.reason or '')[:60]}" for d in state.dead_letters).items())),
        "inventory_messages": {"received": len(state.inventory_feed),
                               "distinct": len({m.message_id for m in state.inventory_feed})},
        "order_event_messages": {"received": len(state.order_feed),
                                 "distinct": len({m.message_id for m in state.order_feed})},
        "stock_samples": state.stock_samples,
    }


def _adjust_movements(state: FinalState) -> dict[int, Movement]:
    return {int(m.cause[len(ADJUST_CAUSE):]): m for m in state.ledger if m.cause.startswith(ADJUST_CAUSE)}


def _same_id_same_body(feed: list[Delivered]) -> list[str]:
    bodies: dict[str, str] = {}
    problems = []
    for message in feed:
        text = json.dumps(message.body, sort_keys=True)
        if bodies.setdefault(message.message_id, text) != text:
            problems.append(f"message {message.message_id} ({message.routing_key}) arrived with different bodies")
    return problems


def _short(values: list[int], limit: int = 8) -> str:
    return str(values if len(values) <= limit else values[:limit] + ["..."])
