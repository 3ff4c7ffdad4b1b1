"""A short run of the RabbitMQ cluster plan in the normal suite: the real workers and relays
as processes, connected to a 3-node cluster of our own (CONVEYOR_AMQP_URLS, three quorum
replicas), under the seeded workload; the node leading the queues is killed during a publish
burst, one node is partitioned away (it pauses: pause_minority) and the cluster is restarted
node by node; then heal, drain and check every invariant with the same checker.

Replay: ``python -m tests.chaos.run --cluster 3 --seconds 70 --seed 20261212 --rate 20 --gap 1,2
--kinds cluster-kill-leader-node,cluster-partition,cluster-rolling-restart``; ``make
chaos-cluster`` runs the long soak (every kind of the plan).
"""

from __future__ import annotations

import pytest

from tests.chaos.nemesis import CLUSTER_KINDS
from tests.chaos.run import Options, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SHORT = dict(seconds=70, seed=20261212, rate=20, ttl_s=6, gap=(1.0, 2.0), holds=(0.0, 0.15), drain_timeout=60,
             kinds=CLUSTER_KINDS, brokers=3)


def test_a_short_cluster_run_survives_a_leader_kill_a_partition_and_a_rolling_restart(tmp_path, capsys):
    # Given the workers on a 3-node cluster under a seeded workload, when the leaders' node is
    # killed, a node is partitioned away and every node is restarted in turn
    report = run(Options(**SHORT, workdir=str(tmp_path)))

    # Then every invariant holds (the summary names the offending ids and the run's files)
    with capsys.disabled():
        print(f"\n{report.summary()}")
    assert report.verdict.ok, report.summary()
    applied = {f["kind"]: f for f in report.faults}
    assert set(applied) == set(CLUSTER_KINDS), f"not every cluster fault was applied: {report.faults}"
    # and each fault did what it says: the killed node led queues, the partition cut links,
    # and the rolling restart went through all three nodes
    assert applied["cluster-kill-leader-node"]["leading"] > 0
    assert applied["cluster-partition"]["links_cut"] > 0
    assert [step["node"] for step in applied["cluster-rolling-restart"]["steps"]] == [1, 2, 3]
