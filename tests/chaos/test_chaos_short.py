"""A short chaos run in the normal suite: the real workers and relays as processes, a
seeded workload and one fault of each of ten kinds (worker kills — one while it holds
stock locks — and a pause past the heartbeat; a broker restart during a publish burst, a
memory alarm, all connections closed; the relays' LISTEN connections terminated, the
database restarted with an immediate stop; a partition of the database and a reset of
every broker connection), then heal, drain and check every invariant.

Seeded, so a failure can be replayed: ``python -m tests.chaos.run --seconds 40 --seed
20261125 --rate 20 --kinds ...`` (the options below); ``make chaos`` runs the long soak.
"""

from __future__ import annotations

import pytest

from tests.chaos.run import Options, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHORT = dict(
    seconds=42, seed=20261125, rate=20, ttl_s=6, gap=(1.0, 2.0), holds=(0.0, 0.15), drain_timeout=45,
    kinds=("kill-worker", "kill-lock-holder", "pause-worker", "broker-restart", "broker-memory-alarm",
           "broker-close-connections", "db-terminate-relay-listener", "db-restart", "net-blackhole-db",
           "net-reset-broker"),
)


def test_a_short_seeded_chaos_run_loses_nothing_doubles_nothing_and_oversells_nothing(tmp_path, capsys):
    # Given the workers under a seeded workload, when ten kinds of fault hit them and heal
    report = run(Options(**SHORT, workdir=str(tmp_path)))

    # Then every invariant holds (the summary names the offending ids and the run's files)
    with capsys.disabled():
        print(f"\n{report.summary()}")
    assert report.verdict.ok, report.summary()
    assert len({f["kind"] for f in report.faults}) >= 8, f"too few faults applied: {report.faults}"
    # and the maintenance loop ran passes under the faults (the logs' `maintained` lines)
    passes = sum(log.read_text(errors="replace").count('"event": "maintained"') for log in tmp_path.glob("*.log"))
    assert passes >= 3, f"maintenance passes logged: {passes}"
