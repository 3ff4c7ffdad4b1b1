"""The nemesis: which faults exist, a seeded schedule of them, and how each is applied and
healed. The schedule is a pure function of the seed (unit-tested); applying a fault needs
the cluster (and the order feed, for a publish burst).

Faults run one after the other. ``apply`` returns what was done (recorded in the history)
and the function that heals it, which the run calls once the fault's ``hold`` has passed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.cluster import RELAY_BACKENDS, RELAY_LISTENER, WORKER_BACKENDS, Cluster

# kind -> (hold range in seconds, what it does)
FAULTS: dict[str, tuple[tuple[float, float], str]] = {
    "kill-worker": ((0.5, 2.0), "SIGKILL a worker process (under load: often between commit and ack), "
                                "restarted after the hold"),
    "kill-lock-holder": ((0.5, 1.5), "SIGKILL a worker process while its transaction holds stock locks"),
    "kill-relay-leader": ((1.0, 3.0), "SIGKILL the process whose relay holds the lease"),
    "pause-worker": ((5.0, 9.0), "SIGSTOP a worker process past its heartbeat (2 s), then SIGCONT"),
    "broker-close-connections": ((0.0, 0.0), "rabbitmqctl close_all_connections"),
    "broker-restart": ((0.5, 1.5), "stop and start RabbitMQ during a publish burst"),
    "broker-memory-alarm": ((2.0, 8.0), "set_vm_memory_high_watermark 0.0000001, then back to 0.4"),
    "db-terminate-workers": ((0.0, 0.0), "pg_terminate_backend of every worker backend"),
    "db-terminate-relay-listener": ((0.0, 0.0), "pg_terminate_backend of the relays' LISTEN connections"),
    "db-restart": ((0.5, 2.5), "pg_ctl stop -m immediate during load, start again after the hold"),
    "net-delay-db": ((3.0, 6.0), "the database proxy delays every chunk by 20-150 ms"),
    "net-delay-broker": ((3.0, 6.0), "the broker proxy delays every chunk by 20-150 ms"),
    "net-blackhole-db": ((2.0, 8.0), "the database proxy forwards nothing (a partition: bytes wait)"),
    "net-blackhole-broker": ((2.0, 8.0), "the broker proxy forwards nothing (past the 2 s heartbeat)"),
    "net-reset-db": ((0.0, 0.0), "the database proxy resets every connection"),
    "net-reset-broker": ((0.0, 0.0), "the broker proxy resets every connection"),
    # Only on a Patroni cluster (tests/chaos/patroni.py, --database patroni): the hold is how
    # long the dead member's host stays down before it rejoins.
    "db-failover": ((8.0, 15.0), "a burst of orders, then kill -9 the primary's PostgreSQL and Patroni "
                                 "(a dead host): Patroni promotes a standby; the member rejoins after the hold"),
    "db-failover-lagging": ((8.0, 15.0), "the same, with the primary's WAL senders paused (SIGSTOP) for 1 s "
                                         "before the kill: the primary dies with WAL no standby has"),
}
PATRONI_KINDS = ("db-failover", "db-failover-lagging")
KINDS = tuple(kind for kind in FAULTS if kind not in PATRONI_KINDS)  # the single-server run's


@dataclass(frozen=True)
class Fault:
    at: float               # seconds after the load started
    kind: str
    hold: float             # seconds until it is healed
    seed: int               # picks targets and magnitudes when applied


@dataclass
class Applied:
    detail: dict
    heal: Callable[[], dict] = field(default=lambda: {})


def schedule(seed: int, *, duration: float, kinds: tuple[str, ...] = KINDS, start: float = 3.0,
             gap: tuple[float, float] = (1.5, 5.0), tail: float = 3.0,
             holds: tuple[float, float] = (0.0, 1.0)) -> list[Fault]:
    """Faults from ``start`` until ``tail`` seconds before ``duration``, one after the other
    with a random gap; the kinds come in shuffled rounds, so each appears before any repeats.
    ``holds`` narrows each kind's hold range (0..1 of it; a short run takes the low end)."""
    rng = random.Random(f"{seed}:nemesis")
    faults: list[Fault] = []
    at, pending = start, []
    while True:
        if not pending:
            pending = list(kinds)
            rng.shuffle(pending)
        kind = pending.pop()
        low, high = FAULTS[kind][0]
        hold = round(low + (high - low) * rng.uniform(*holds), 2)
        if at + hold > duration - tail:
            return faults
        faults.append(Fault(round(at, 2), kind, hold, rng.getrandbits(32)))
        at += hold + rng.uniform(*gap)


def apply(fault: Fault, cluster: Cluster, *, burst: Callable[[int], None]) -> Applied:
    rng = random.Random(fault.seed)
    return _APPLY[fault.kind](fault, cluster, rng, burst)


# -- processes -------------------------------------------------------------------------------

def _kill_worker(fault, cluster, rng, _burst) -> Applied:
    name = rng.choice(sorted(cluster.processes))
    return Applied({"process": name, "pid": cluster.kill(name, restart_after=fault.hold)})


def _kill_lock_holder(fault, cluster, rng, _burst) -> Applied:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        holders = cluster.lock_holders()
        if holders:
            name = rng.choice(holders)
            return Applied({"process": name, "pid": cluster.kill(name, restart_after=fault.hold),
                            "holding_locks": True})
        time.sleep(0.01)
    return Applied({"skipped": "no lock holder seen in 5 s"})


def _kill_relay_leader(fault, cluster, rng, _burst) -> Applied:
    name = cluster.relay_leader()
    if name is None:
        return Applied({"skipped": "no live relay lease"})
    return Applied({"process": name, "pid": cluster.kill(name, restart_after=fault.hold)})


def _pause_worker(fault, cluster, rng, _burst) -> Applied:
    name = rng.choice(sorted(cluster.processes))
    pid = cluster.pause(name)

    def heal() -> dict:
        cluster.resume(name)
        return {"process": name}
    return Applied({"process": name, "pid": pid}, heal)


# -- broker ----------------------------------------------------------------------------------

def _close_connections(fault, cluster, rng, _burst) -> Applied:
    cluster.close_broker_connections()
    return Applied({})


def _broker_restart(fault, cluster, rng, burst) -> Applied:
    burst(rng.randint(100, 200))
    time.sleep(0.3)  # the burst is under way
    started = time.monotonic()
    cluster.broker.stop()
    time.sleep(fault.hold)
    cluster.broker.start()
    return Applied({"down_s": round(time.monotonic() - started, 2)})


def _memory_alarm(fault, cluster, rng, _burst) -> Applied:
    cluster.memory_alarm(True)

    def heal() -> dict:
        cluster.memory_alarm(False)
        return {}
    return Applied({}, heal)


# -- database --------------------------------------------------------------------------------

def _terminate_workers(fault, cluster, rng, _burst) -> Applied:
    return Applied({"terminated": cluster.terminate_backends(WORKER_BACKENDS, not_like=RELAY_BACKENDS)})


def _terminate_listeners(fault, cluster, rng, _burst) -> Applied:
    return Applied({"terminated": cluster.terminate_backends(RELAY_LISTENER)})


def _db_restart(fault, cluster, rng, _burst) -> Applied:
    started = time.monotonic()
    cluster.restart_database(down_s=fault.hold)
    return Applied({"down_s": round(time.monotonic() - started, 2)})


def _db_failover(fault, cluster, rng, burst) -> Applied:
    burst(rng.randint(50, 150))
    time.sleep(0.3)  # the burst is under way: batches in flight, commits waiting for the standby
    detail = cluster.failover(lagging_s=1.0 if fault.kind == "db-failover-lagging" else 0.0)

    def heal() -> dict:
        return cluster.rejoin(detail["killed"])
    return Applied(detail, heal)


# -- network ---------------------------------------------------------------------------------

def _proxy(cluster: Cluster, kind: str):
    return cluster.db_proxy if kind.endswith("-db") else cluster.broker_proxy


def _delay(fault, cluster, rng, _burst) -> Applied:
    proxy = _proxy(cluster, fault.kind)
    proxy.delay_s = round(rng.uniform(0.02, 0.15), 3)
    return Applied({"delay_s": proxy.delay_s}, _healer(proxy))


def _blackhole(fault, cluster, rng, _burst) -> Applied:
    proxy = _proxy(cluster, fault.kind)
    proxy.hold = True
    return Applied({}, _healer(proxy))


def _healer(proxy) -> Callable[[], dict]:
    def heal() -> dict:
        proxy.heal()
        return {}
    return heal


def _reset(fault, cluster, rng, _burst) -> Applied:
    return Applied({"connections": _proxy(cluster, fault.kind).reset_all()})


_APPLY = {
    "kill-worker": _kill_worker,
    "kill-lock-holder": _kill_lock_holder,
    "kill-relay-leader": _kill_relay_leader,
    "pause-worker": _pause_worker,
    "broker-close-connections": _close_connections,
    "broker-restart": _broker_restart,
    "broker-memory-alarm": _memory_alarm,
    "db-terminate-workers": _terminate_workers,
    "db-terminate-relay-listener": _terminate_listeners,
    "db-restart": _db_restart,
    "net-delay-db": _delay,
    "net-delay-broker": _delay,
    "net-blackhole-db": _blackhole,
    "net-blackhole-broker": _blackhole,
    "net-reset-db": _reset,
    "net-reset-broker": _reset,
    "db-failover": _db_failover,
    "db-failover-lagging": _db_failover,
}


# The RabbitMQ cluster plan (--cluster 3) adds its kinds: tests/chaos/rabbit_plan.py.
from tests.chaos import rabbit_plan  # noqa: E402 - registers into FAULTS and _APPLY

CLUSTER_KINDS, CLUSTER_PLAN = rabbit_plan.register(FAULTS, _APPLY, KINDS)
