"""The RabbitMQ cluster plan (``python -m tests.chaos.run --cluster 3``, ``make chaos-cluster``):
the faults of a three-node cluster (``conveyor.devservices.rabbitmq_cluster``), applied under the
same workload and judged by the same checker as the single-node run.

- ``cluster-kill-leader-node``: a publish burst, then SIGKILL of the node that leads most of
  the ``conveyor.*`` quorum queues (read from the nodes' own queue records); the other two elect
  new leaders; the node is started again after the hold and rejoins.
- ``cluster-partition``: one node (seeded choice) cut off from the other two — every
  node-to-node link of it resets and refuses new connections (a real partition of the Erlang
  distribution, see the cluster module); with ``pause_minority`` it pauses, closing its clients'
  connections, which fail over to the majority; healed after the hold, it resumes by itself.
- ``cluster-rolling-restart``: each node in turn, once ``check_if_node_is_quorum_critical``
  passes for it (every quorum queue keeps a majority without it), stopped (SIGTERM) and started.

Every other kind of the single-node run applies too, except ``broker-restart`` (a whole-cluster
stop): the broker's network faults act on the proxies in front of all three nodes at once.
"""

from __future__ import annotations

import time
from collections import Counter

FAULTS: dict[str, tuple[tuple[float, float], str]] = {
    "cluster-kill-leader-node": ((1.0, 3.0), "a publish burst, then SIGKILL the node leading most conveyor.* "
                                             "quorum queues; started again after the hold"),
    "cluster-partition": ((6.0, 10.0), "cut one node off from the other two (its inter-node links reset and "
                                       "refuse): it pauses (pause_minority), its clients go to the others"),
    "cluster-rolling-restart": ((0.0, 0.0), "restart each node in turn (SIGTERM, start), each once no quorum "
                                            "queue depends on it (check_if_node_is_quorum_critical)"),
}
EXCLUDED = ("broker-restart",)


def register(faults: dict, apply: dict, single_kinds: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Add the cluster kinds to the nemesis; returns (the cluster kinds, the whole cluster plan)."""
    faults.update(FAULTS)
    apply.update({"cluster-kill-leader-node": _kill_leader_node, "cluster-partition": _partition,
                  "cluster-rolling-restart": _rolling_restart})
    kinds = tuple(FAULTS)
    return kinds, (*kinds, *(kind for kind in single_kinds if kind not in EXCLUDED))


def _kill_leader_node(fault, cluster, rng, burst):
    from tests.chaos.nemesis import Applied

    rabbit = cluster.rabbit
    node = rabbit.leader_node("conveyor.")
    leading = Counter(rabbit.leaders("conveyor.").values())[rabbit.nodes[node].node]
    burst(rng.randint(100, 200))
    time.sleep(0.3)  # the burst is under way: confirms in flight when the leader dies
    started = time.monotonic()
    rabbit.kill(node)
    time.sleep(fault.hold)
    rabbit.start(node)
    after = Counter(rabbit.leaders("conveyor.").values())
    return Applied({"node": node + 1, "leading": leading, "down_s": round(time.monotonic() - started, 2),
                    "leaders_after": {name.split("@")[0].rsplit("-", 1)[-1]: n for name, n in sorted(after.items())}})


def _partition(fault, cluster, rng, _burst):
    from tests.chaos.nemesis import Applied

    rabbit = cluster.rabbit
    node = rng.randrange(rabbit.size)
    cut = rabbit.partition(node)

    def heal() -> dict:
        started = time.monotonic()
        rabbit.heal()
        return {"node": node + 1, "resumed_s": round(time.monotonic() - started, 2)}
    return Applied({"node": node + 1, "links_cut": cut}, heal)


def _rolling_restart(fault, cluster, rng, _burst):
    from tests.chaos.nemesis import Applied

    started = time.monotonic()
    steps = cluster.rabbit.rolling_restart(
        on_step=lambda i, what: cluster.history.note("cluster", f"rolling {what}", node=i + 1))
    return Applied({"steps": steps, "took_s": round(time.monotonic() - started, 1)})
