"""PostgreSQL failover with Patroni in the normal suite (issue 17): the real workers and relays
as processes on a 3-member Patroni cluster (one etcd), on the libpq multi-host URL with
``target_session_attrs=read-write``; under load (and a burst of orders) the primary's
PostgreSQL and Patroni are killed with SIGKILL, Patroni promotes a standby, the dead member
rejoins; then heal, drain and check every invariant.

- synchronous replication (``synchronous_mode``, strict): every verdict must be empty — no
  acknowledged order lost, none doubled, nothing oversold, the relay's lease and the partner
  feeds complete — and throughput must come back;
- asynchronous replication: the run must complete and *report*; whether the promoted standby
  missed an acknowledged commit is a race, so the test asserts that the report says what
  happened (losses named, or that there were none this time), not which way the race went.

Seeded, so a failure can be replayed: ``python -m tests.chaos.run --database patroni --seconds
45 --seed 20261208`` (``make chaos-patroni`` runs the long soak). Needs Debian's ``patroni``
and ``etcd-server`` (tests/setup-tools.sh); under CI=true their absence is a failure.
"""

from __future__ import annotations

import os

import pytest

from conveyor.devservices.patroni import patroni_available
from tests.chaos.run import Options, run

missing = patroni_available()
if missing:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Patroni/etcd {missing}; CI must run tests/setup-tools.sh before the tests", pytrace=False)
    pytest.skip(f"Patroni/etcd {missing}", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# One failover with the primary's WAL senders paused for the second before the kill: the
# primary dies with WAL that no standby has (commits waiting, or acknowledged when asynchronous).
SHORT = dict(seconds=45, seed=20261208, rate=20, ttl_s=6, kinds=("db-failover-lagging",), gap=(20.0, 30.0),
             holds=(0.0, 0.2), first_fault_at=18.0, drain_timeout=60)


def test_a_failover_under_load_with_synchronous_replication_loses_nothing(tmp_path, capsys):
    # Given the workers on a synchronous Patroni cluster under a seeded workload,
    # when the primary's host dies (kill -9 of PostgreSQL and Patroni) and a standby is promoted
    report = run(Options(**SHORT, database="patroni", workdir=str(tmp_path)))

    with capsys.disabled():
        print(f"\n{report.summary()}")
    # Then a failover happened, to another member, and every invariant holds
    assert [f["kind"] for f in report.faults] == ["db-failover-lagging"], report.faults
    (failover,) = report.failovers
    assert failover["promoted"] != failover["killed"] and failover["wal_senders_paused"] >= 1, failover
    assert report.verdict.ok, report.summary()
    # and throughput came back (and the relay published again, under a live lease)
    assert failover["throughput_recovered_s"] is not None, failover
    assert failover["relay_back_s"] is not None, failover
    # and what the dead primary committed beyond the fork (never acknowledged: its clients
    # were waiting for the standby) was counted from its WAL
    assert isinstance(failover["commits_beyond_fork"], int), failover


def test_a_failover_with_asynchronous_replication_is_reported_for_what_it_lost(tmp_path, capsys):
    # Given the same run on asynchronous replication (the primary acknowledges commits while
    # no standby receives them)
    report = run(Options(**{**SHORT, "seed": 20261209}, database="patroni-async", workdir=str(tmp_path)))

    with capsys.disabled():
        print(f"\n{report.summary()}")
    # Then the run completed and reported: the failover, and the verdict with its explanation
    (failover,) = report.failovers
    assert failover["synchronous"] is False and failover["promoted"] != failover["killed"]
    assert report.passed  # a report, whatever the race did
    summary = report.summary()
    assert "asynchronous replication:" in summary
    if report.verdict.ok:
        assert "nothing acknowledged was lost" in summary
    else:
        # every loss is named with its ids, and attributed to the lost commits
        assert "acknowledged operation(s) lost with the old primary" in summary
        assert any(report.verdict.problems.values())
