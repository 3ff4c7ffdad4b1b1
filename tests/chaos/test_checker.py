"""The invariant checker on hand-made histories and final states (no servers, milliseconds).

Each test starts from one consistent world — an order placed, paid, shipped and delivered,
every message processed once, the partners fed — breaks one thing, and expects exactly
that check to name the culprit.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.chaos import nemesis
from tests.chaos.checker import DeadLetter, Delivered, FinalState, Movement, check
from tests.chaos.history import History, Operation, operations

ORDER = "11111111-1111-4111-8111-111111111111"
INITIAL = {"A": 10}


def op(index: int, f: str, outcome: str = "ok", *, process: str = "shop", **value) -> Operation:
    return Operation(index, process, f, outcome, value, float(index), float(index) + 0.1)


def sent(index: int, routing_key: str, message_id: str, outcome: str = "ok", order_id: str = ORDER, **extra):
    return op(index, routing_key, outcome, message_id=message_id, order_id=order_id, **extra)


def inventory(version: int, on_hand: int, reserved: int, message_id: str | None = None) -> Delivered:
    body = {"sku": "A", "tenant_id": "default", "on_hand": on_hand, "reserved": reserved,
            "available": on_hand - reserved, "version": version}
    return Delivered(message_id or f"inv-{version}", "stock.changed.default.A", body)


def event(routing_key: str, message_id: str | None = None, order_id: str = ORDER) -> Delivered:
    return Delivered(message_id or f"{routing_key}-{order_id}", routing_key, {"order_id": order_id})


def delivered_world() -> tuple[list[Operation], FinalState]:
    """Order ORDER: 2 x A reserved, paid, shipped, delivered; A went 10 -> reserved 2 -> 8."""
    ops = [sent(1, "order.created", "m-created"), sent(2, "payment.authorized", "m-pay", payment_id="pay-1"),
           sent(3, "shipment.dispatched", "m-dispatch"), sent(4, "shipment.delivered", "m-deliver")]
    state = FinalState(
        orders={ORDER: "DELIVERED"}, order_rows={ORDER: 1}, registry={ORDER}, lines={ORDER: {"A": 2}},
        reservations=[(ORDER, "A", 2, "COMMITTED")],
        inbox={"m-created": 1, "m-pay": 1, "m-dispatch": 1, "m-deliver": 1},
        payments=[("pay-1", ORDER, "authorized")],
        transitions={ORDER: [("RESERVED", "PAID"), ("PAID", "SHIPPED"), ("SHIPPED", "DELIVERED")]},
        stock={"A": (8, 0, 3)},
        ledger=[Movement("A", 1, 10, 0, 10, 0, "chaos-seed"),
                Movement("A", 2, 0, 2, 10, 2, f"order.reserved:{ORDER}"),
                Movement("A", 3, -2, -2, 8, 0, f"order.shipped:{ORDER}")],
        inventory_feed=[inventory(1, 10, 0), inventory(2, 10, 2), inventory(3, 8, 0)],
        order_feed=[event("order.reserved"), event("order.paid"), event("order.shipped"), event("order.delivered")],
    )
    return ops, state


def problems(ops, state, name: str) -> list[str]:
    verdict = check(ops, state, initial=INITIAL)
    others = {k: v for k, v in verdict.problems.items() if v and k != name}
    assert not others, f"unexpected verdicts besides {name}: {others}"
    return verdict.problems[name]


def test_a_consistent_world_passes_every_check():
    ops, state = delivered_world()
    verdict = check(ops, state, initial=INITIAL)
    assert verdict.ok, verdict.summary()
    assert verdict.stats["orders_by_status"] == {"DELIVERED": 1}


# -- lost ------------------------------------------------------------------------------------

def test_a_confirmed_order_that_was_neither_stored_nor_dead_lettered_is_lost():
    # Given a confirmed order.created for an order the database never stored
    ops, state = delivered_world()
    ops.append(sent(5, "order.created", "m-other", order_id="22222222-2222-4222-8222-222222222222"))
    # Then it is reported lost, by its order id
    assert problems(ops, state, "lost") == [
        "order 22222222-2222-4222-8222-222222222222: order.created m-other confirmed, order neither stored "
        "nor dead-lettered"]


def test_a_dead_lettered_order_with_a_reason_is_not_lost_but_one_without_a_reason_is():
    other = "22222222-2222-4222-8222-222222222222"
    ops, state = delivered_world()
    ops.append(sent(5, "order.created", "m-other", order_id=other))
    state.dead_letters = [DeadLetter("conveyor.orders.dlq", "m-other", "order.created", "invalid: not retried", other)]
    assert check(ops, state, initial=INITIAL).ok
    state.dead_letters = [DeadLetter("conveyor.orders.dlq", "m-other", "order.created", None, other)]
    assert problems(ops, state, "lost") == [
        "dead letter m-other (order.created) in conveyor.orders.dlq has no reason"]


def test_an_unknown_publish_may_or_may_not_have_arrived():
    # Given an order.created whose confirm never came (info) and which never arrived
    ops, state = delivered_world()
    ops.append(sent(5, "order.created", "m-other", "info", order_id="22222222-2222-4222-8222-222222222222"))
    # Then nothing is wrong
    assert check(ops, state, initial=INITIAL).ok


def test_a_confirmed_payment_never_processed_is_lost():
    ops, state = delivered_world()
    del state.inbox["m-pay"]
    assert problems(ops, state, "lost") == [f"order {ORDER}: payment.authorized m-pay confirmed, neither "
                                            "processed nor dead-lettered"]


def test_a_committed_stock_change_missing_from_the_ledger_is_lost():
    ops, state = delivered_world()
    ops.append(op(7, "stock.adjust", process="clerk", sku="A", delta=5))
    found = check(ops, state, initial=INITIAL).problems
    assert found["lost"] == ["stock change 7 (A +5) committed, not in the ledger"]


# -- phantom ---------------------------------------------------------------------------------

def test_an_order_whose_publish_certainly_failed_must_not_exist():
    ops, state = delivered_world()
    ops[0] = sent(1, "order.created", "m-created", "fail")
    assert problems(ops, state, "phantom") == [
        f"order {ORDER} stored, its order.created certainly failed",
        "message m-created processed, its publish certainly failed"]


def test_a_processed_message_nobody_sent_is_a_phantom():
    ops, state = delivered_world()
    state.inbox["m-nobody"] = 1
    assert problems(ops, state, "phantom") == ["message m-nobody processed, nobody sent it"]


# -- unfinished and the state machine --------------------------------------------------------

def paid_world() -> tuple[list[Operation], FinalState]:
    """ORDER paid, its dispatch confirmed but never taking effect (dead-lettered or not)."""
    ops, state = delivered_world()
    state.orders[ORDER] = "PAID"
    state.transitions[ORDER] = [("RESERVED", "PAID")]
    state.reservations = [(ORDER, "A", 2, "HELD")]
    state.stock = {"A": (10, 2, 2)}
    state.ledger = state.ledger[:2]
    state.inventory_feed = state.inventory_feed[:2]
    state.order_feed = state.order_feed[:2]
    ops = ops[:3]
    del state.inbox["m-dispatch"], state.inbox["m-deliver"]
    state.dead_letters = [DeadLetter("conveyor.shipments.dlq", "m-dispatch", "shipment.dispatched",
                                     "transient: gave up after 12 attempts", ORDER)]
    return ops, state


def test_an_order_left_paid_with_its_dispatch_in_the_dlq_is_explained():
    ops, state = paid_world()
    assert check(ops, state, initial=INITIAL).ok


def test_an_order_left_paid_for_no_reason_is_unfinished():
    ops, state = paid_world()
    state.dead_letters = []
    state.inbox["m-dispatch"] = 1  # processed, yet the order did not move
    assert problems(ops, state, "unfinished") == [f"order {ORDER} ended PAID"]


def test_transitions_that_skip_a_state_break_the_state_machine():
    ops, state = delivered_world()
    state.transitions[ORDER] = [("RESERVED", "SHIPPED"), ("SHIPPED", "DELIVERED")]
    found = check(ops, state, initial=INITIAL).problems
    assert found["state_machine"] == [f"order {ORDER}: transitions [('RESERVED', 'SHIPPED'), "
                                      "('SHIPPED', 'DELIVERED')] break the state machine"]


def test_an_order_stored_twice_is_reported():
    ops, state = delivered_world()
    state.order_rows[ORDER] = 2
    assert problems(ops, state, "state_machine") == [f"order {ORDER} stored 2 times"]


# -- duplicates and oversell -----------------------------------------------------------------

def test_two_captures_of_one_order_are_a_duplicate_effect():
    ops, state = delivered_world()
    ops.append(sent(5, "payment.authorized", "m-pay-2", payment_id="pay-2"))
    state.inbox["m-pay-2"] = 1
    state.payments.append(("pay-2", ORDER, "authorized"))
    assert problems(ops, state, "duplicates") == [f"order {ORDER} captured 2 payments"]


def test_stock_committed_twice_for_one_order_is_a_duplicate_effect():
    # Given the ledger shows the shipment's commit twice (and the level agrees with it)
    ops, state = delivered_world()
    state.ledger.append(Movement("A", 4, -2, 0, 6, 0, f"order.shipped:{ORDER}"))
    state.stock["A"] = (6, 0, 4)
    state.inventory_feed.append(inventory(4, 6, 0))
    found = check(ops, state, initial=INITIAL).problems
    # Then the duplicate is named, and the books no longer balance
    assert found["duplicates"] == [f"stock of A moved 2 times for order.shipped:{ORDER}"]
    assert found["conservation"] == ["A: on hand 6, expected 8 = initial 10 +0 changes - 2 shipped"]


def test_reservations_that_differ_from_the_lines_are_reported():
    ops, state = delivered_world()
    state.reservations.append((ORDER, "A", 2, "COMMITTED"))
    found = check(ops, state, initial=INITIAL).problems["duplicates"]
    assert f"order {ORDER}: 2 reservations of A" in found


def test_a_sampled_oversell_is_reported_even_if_the_end_looks_fine():
    ops, state = delivered_world()
    state.oversell_samples = [{"at": 3.2, "sku": "A", "on_hand": 1, "reserved": 2, "version": 7}]
    assert problems(ops, state, "oversell") == [
        "sampled {'at': 3.2, 'sku': 'A', 'on_hand': 1, 'reserved': 2, 'version': 7}"]


# -- the relay -------------------------------------------------------------------------------

def test_repeated_stock_messages_are_fine_but_a_missing_version_is_a_gap():
    ops, state = delivered_world()
    state.inventory_feed.insert(2, inventory(2, 10, 2))  # a repeat (same message id)
    assert check(ops, state, initial=INITIAL).ok
    del state.inventory_feed[1:3]
    assert problems(ops, state, "relay_inventory") == [
        "A: database at v3, partner's last v3, missing [2], unexpected []"]


def test_stock_versions_out_of_order_are_reported():
    ops, state = delivered_world()
    state.inventory_feed = [state.inventory_feed[0], state.inventory_feed[2], state.inventory_feed[1]]
    assert problems(ops, state, "relay_inventory") == ["A: versions out of order [1, 3, 2]"]


def test_a_relayed_level_that_differs_from_the_ledger_is_reported():
    ops, state = delivered_world()
    state.inventory_feed[2] = inventory(3, 9, 0)
    assert problems(ops, state, "relay_inventory") == [
        "A v3: partner got on hand/reserved (9, 0), the ledger says (8, 0)"]


def test_an_order_event_announced_twice_under_two_message_ids_is_reported():
    ops, state = delivered_world()
    state.order_feed.insert(2, event("order.paid", "another-id"))
    assert problems(ops, state, "relay_orders") == [
        f"order {ORDER}: partner saw ['order.reserved', 'order.paid', 'order.paid', 'order.shipped', "
        "'order.delivered'], the order went ['order.reserved', 'order.paid', 'order.shipped', 'order.delivered']"]


# -- conservation ----------------------------------------------------------------------------

def test_stock_changes_of_unknown_outcome_count_when_the_ledger_has_them():
    # Given a restock whose commit answer was lost (info), which did commit
    ops, state = delivered_world()
    ops.append(op(9, "stock.adjust", "info", process="clerk", sku="A", delta=5))
    state.ledger.append(Movement("A", 4, 5, 0, 13, 0, "chaos-adjust:9"))
    state.stock["A"] = (13, 0, 4)
    state.inventory_feed.append(inventory(4, 13, 0))
    # Then the books balance with it
    assert check(ops, state, initial=INITIAL).ok
    # And a level one unit off is named
    state.stock["A"] = (12, 0, 4)
    assert "A: on hand 12, expected 13 = initial 10 +5 changes - 2 shipped" in problems(ops, state, "conservation")


def test_reconcile_findings_fail_the_run():
    ops, state = delivered_world()
    state.reconcile = {"reserved_vs_reservations": [{"sku": "A", "actual": 1, "expected": 0}]}
    assert problems(ops, state, "conservation") == [
        "reconcile reserved_vs_reservations: [{'sku': 'A', 'actual': 1, 'expected': 0}]"]


# -- the history and the schedule ------------------------------------------------------------

def test_an_operation_that_never_completed_counts_as_unknown():
    history = History()
    first = history.invoke("orders", "order.created", message_id="m1")
    history.invoke("orders", "order.created", message_id="m2")
    history.complete(first, "ok", attempts=1)
    done = {o.value["message_id"]: o.outcome for o in operations(history.events)}
    assert done == {"m1": "ok", "m2": "info"}
    with pytest.raises(ValueError):
        history.complete(first, "ok")


def test_the_fault_schedule_is_a_function_of_the_seed_and_brings_every_kind_before_repeating():
    first = nemesis.schedule(7, duration=600)
    assert first == nemesis.schedule(7, duration=600)
    assert first != nemesis.schedule(8, duration=600)
    assert {f.kind for f in first[:len(nemesis.KINDS)]} == set(nemesis.KINDS)
    assert all(a.at + a.hold < b.at for a, b in zip(first, first[1:]))
    assert first[-1].at + first[-1].hold <= 600 - 3


def test_a_short_schedule_fits_its_window():
    faults = nemesis.schedule(1, duration=30, kinds=("kill-worker", "db-restart"))
    assert faults and all(3 <= f.at and f.at + f.hold <= 27 for f in faults)
    assert {dataclasses.replace(f, seed=0).kind for f in faults} <= {"kill-worker", "db-restart"}
