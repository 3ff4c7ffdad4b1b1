"""Replay rules: the replayed copy's properties, where it goes, the pace, and the dry-run verdicts."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from pika.spec import BasicProperties

from conveyor.workers.dlq.letters import read_letter
from conveyor.workers.dlq.replay import Pacer, parse_rate, plan_item, replay_properties, target_for
from tests.support.dlq import dead_letter_properties, lock_timeout, make_letter, schema_violation

WHEN = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)


def replayed(properties: BasicProperties, body: bytes = b"{}") -> BasicProperties:
    letter = read_letter(properties, body, position=0)
    return replay_properties(properties, letter, operator="alice", run_id="run-1", now=WHEN)


def test_the_copy_keeps_id_and_properties_and_starts_a_fresh_attempt():
    original = dead_letter_properties(b"{}", lock_timeout(), attempts=3, message_id="m-1", failed_at=WHEN)
    original.headers["x-delivery-count"] = 4
    original.headers["custom"] = "kept"

    copy = replayed(original)

    assert (copy.message_id, copy.app_id, copy.type, copy.delivery_mode) == ("m-1", "shop", "order.created", 2)
    headers = copy.headers
    assert not {"x-conveyor-attempts", "x-conveyor-error-class", "x-conveyor-last-failure-at",
                "x-delivery-count"} & set(headers)
    assert headers["x-conveyor-previous-attempts"] == 3
    assert headers["x-conveyor-previous-error-class"] == "TransientDatabaseError"
    assert headers["x-conveyor-original-routing-key"] == "order.created"
    assert (headers["x-conveyor-replayed-at"], headers["x-conveyor-replayed-by"], headers["x-conveyor-replay-id"]) \
        == (WHEN.isoformat(), "alice", "run-1")
    assert headers["custom"] == "kept" and copy.user_id is None


def test_a_second_replay_keeps_only_the_latest_previous_failure():
    original = dead_letter_properties(b"{}", lock_timeout(), attempts=3, failed_at=WHEN)
    failed_again = dict(replayed(original).headers, **{"x-conveyor-attempts": 1,
                                                       "x-conveyor-error-class": "KeyError"})

    copy = replayed(BasicProperties(message_id="m", headers=failed_again))

    assert copy.headers["x-conveyor-previous-attempts"] == 1
    assert copy.headers["x-conveyor-previous-error-class"] == "KeyError"


def test_a_broker_dead_letter_gets_its_origin_from_x_death():
    death = {"queue": "conveyor.orders", "reason": "delivery_limit", "exchange": "orders",
             "routing-keys": ["order.created"], "time": WHEN}

    copy = replayed(BasicProperties(message_id="m", headers={"x-death": [death]}))

    assert "x-death" not in copy.headers
    assert copy.headers["x-conveyor-original-routing-key"] == "order.created"
    assert copy.headers["x-conveyor-previous-reason"] == "broker: delivery_limit"


def test_the_target_is_the_origin_or_the_named_queue():
    letter = make_letter()
    assert target_for(letter, to_queue=None) == ("orders", "order.created")
    assert target_for(letter, to_queue="q") == ("", "q")
    assert target_for(replace(letter, exchange=None), to_queue=None) is None


@pytest.mark.parametrize(("text", "per_second"), [("20", 20.0), ("20/s", 20.0), ("30/m", 0.5), ("7200/h", 2.0),
                                                  ("2.5/s", 2.5)])
def test_rates(text, per_second):
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["0", "fast", "-1/s", "5/d", ""])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(text)


def test_the_pacer_spaces_publishes_and_does_not_bank_idle_time():
    now = [100.0]
    pacer = Pacer(4, clock=lambda: now[0])

    assert [pacer.delay(), pacer.delay(), pacer.delay()] == [0.0, 0.25, 0.5]
    now[0] = 200.0   # a long pause earns no burst
    assert [pacer.delay(), pacer.delay()] == [0.0, 0.25]
    assert Pacer(None).delay() == 0.0


def test_dry_run_verdicts():
    exists = lambda target: target != ("missing", "order.created")  # noqa: E731
    ok = make_letter()
    invalid = read_letter(dead_letter_properties(b"{}", schema_violation("items: too short")), b"{}", position=0)

    assert plan_item(ok, processed=set(), to_queue=None, target_exists=exists).verdict == "replay"
    assert plan_item(ok, processed={"m"}, to_queue=None, target_exists=exists).verdict == "already processed"
    assert plan_item(replace(ok, exchange="missing"), processed=set(), to_queue=None,
                     target_exists=exists).verdict == "cannot replay"
    assert plan_item(replace(ok, routing_key=None), processed=set(), to_queue=None,
                     target_exists=exists).verdict == "cannot replay"
    assert "dead-lettered again" in plan_item(invalid, processed=set(), to_queue=None, target_exists=exists).detail
