"""The failover measurement (tests/chaos/patroni.py) on hand-made commit times."""

from __future__ import annotations

from tests.chaos.patroni import recovery_after


def test_throughput_recovery_is_measured_from_the_kill_to_the_first_second_back_at_80_percent():
    # Given 10 commits a second for 20 s, a kill at t=20, nothing for 8 s, then a backlog
    # drained at 3 a second for 2 s and 10 a second again from t=30
    stamps = [i / 10 for i in range(200)]
    stamps += [28 + i / 3 for i in range(6)] + [30 + i / 10 for i in range(100)]

    recovery = recovery_after(stamps, 20.0)

    # Then the baseline is 10/s, the first commit after the kill came 8 s later, and the last
    # second's commits reached 8 only once the rate was back (the 3/s trickle does not count)
    assert recovery.baseline_per_s == 10
    assert recovery.first_order_s == 8.0
    assert recovery.throughput_s is not None and 10.6 <= recovery.throughput_s <= 10.9


def test_no_recovery_is_reported_when_throughput_never_comes_back():
    stamps = [i / 10 for i in range(200)] + [25.0, 26.0, 27.0]
    recovery = recovery_after(stamps, 20.0)
    assert recovery.first_order_s == 5.0
    assert recovery.throughput_s is None
