"""Tenant fairness, the pure part (runtime/throttle.py): parsing the limits and the GCRA."""

from __future__ import annotations

import pytest

from conveyor.workers.runtime.throttle import RateLimits, TenantThrottle, defer_tier, parse_limits


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "expected"), [
    ("", RateLimits({}, None)),
    ("shop-a=200,*=1000", RateLimits({"shop-a": 200.0}, 1000.0)),
    (" shop.b = 2.5 , ", RateLimits({"shop.b": 2.5}, None)),
])
def test_limits_parse(text, expected):
    assert parse_limits(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("shop-a", "expected TENANT=ORDERS_PER_SECOND"),
    ("shop-a=fast", "expected TENANT=ORDERS_PER_SECOND"),
    ("shop-a=0", "above 0"),
    ("shop-a=1,shop-a=2", "named twice"),
    ("*=1,*=2", "named twice"),
    ("shop a=1", "expected TENANT"),
])
def test_bad_limits_are_refused_naming_the_entry(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_limits(text)


def test_a_tenant_runs_one_second_ahead_then_waits_in_line_one_slot_each():
    clock = Clock()
    throttle = TenantThrottle(parse_limits("flood=10"), clock=clock)

    admitted = [throttle.admit("flood") for _ in range(11)]
    slots = [throttle.admit("flood") for _ in range(3)]

    assert admitted == [0.0] * 11  # a second's worth (and the first) at once
    assert slots == pytest.approx([clock.now + 0.1, clock.now + 0.2, clock.now + 0.3])


def test_a_deferred_message_is_admitted_at_its_slot_without_being_charged_again():
    clock = Clock()
    throttle = TenantThrottle(parse_limits("flood=10"), clock=clock)
    for _ in range(11):
        throttle.admit("flood")
    slot = throttle.admit("flood")

    assert throttle.admit("flood", slot=slot) == slot  # came back early: same slot, nothing charged
    clock.now = slot
    assert throttle.admit("flood", slot=slot) == 0.0
    assert throttle.admit("flood") == pytest.approx(slot + 0.1)  # the line moved on by one slot only


def test_other_tenants_are_not_held_up_and_unnamed_tenants_follow_the_default():
    throttle = TenantThrottle(parse_limits("flood=1,*=1000"), clock=Clock())
    for _ in range(50):
        throttle.admit("flood")

    assert all(throttle.admit("calm") == 0.0 for _ in range(500))
    assert TenantThrottle(parse_limits("flood=1"), clock=Clock()).admit("anyone") == 0.0


def test_the_rate_is_split_between_the_queue_consumers():
    clock = Clock()
    throttle = TenantThrottle(parse_limits("flood=10"), share=lambda: 2, clock=clock)

    admitted = sum(throttle.admit("flood") == 0.0 for _ in range(20))

    assert admitted == 6  # 5/s here: one second ahead, and the first


@pytest.mark.parametrize(("delay", "tier"), [(0.01, 1), (1, 1), (1.5, 2), (7, 10), (45, 60), (500, 60)])
def test_a_deferred_message_waits_in_the_smallest_tier_that_covers_its_delay(delay, tier):
    assert defer_tier(delay) == tier
