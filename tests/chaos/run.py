"""One chaos run, end to end: servers of our own, worker processes behind proxies, the
seeded workload, the seeded faults, heal, drain, read, check.

    python -m tests.chaos.run --seconds 600 --seed 7      (from the repository root, or ``make chaos``)
    python -m tests.chaos.run --cluster 3 --seconds 300   (the cluster plan, ``make chaos-cluster``)

Exit 0 when every verdict is empty, 1 otherwise (the offending ids are printed). The run's
directory keeps the history (``history.jsonl``), each process's log and ``report.json``;
it is deleted after a passing run unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from tests.chaos import nemesis, observe
from tests.chaos.checker import FinalState, Verdict, check
from tests.chaos.clients import TENANT, OrderFeed, Workload, declare_partners
from tests.chaos.cluster import Cluster
from tests.chaos.history import History, operations
from tests.chaos.plans import Catalogue, make_catalogue

# Five worker processes: two order workers, one for payments and shipments, two relays
# (one leads, one stands by) each with an expirer.
PROCESSES = {
    "orders-a": ("orders",),
    "orders-b": ("orders",),
    "fulfil": ("payments", "shipments"),
    "relay-a": ("relay", "expirer"),
    "relay-b": ("relay", "expirer"),
}
RETRY_DELAYS = (1, 2, 4)
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Options:
    seconds: float = 600.0          # how long the load (and the faults) last
    seed: int = 1
    rate: float = 30.0              # order.created per second
    ttl_s: float = 8.0              # CONVEYOR_RESERVATION_TTL
    kinds: tuple[str, ...] = nemesis.KINDS
    gap: tuple[float, float] = (1.5, 5.0)
    holds: tuple[float, float] = (0.0, 1.0)   # which part of each fault's hold range
    drain_timeout: float = 120.0
    workdir: str | None = None
    keep: bool = False
    brokers: int = 1                # 3: a RabbitMQ cluster of three nodes (the cluster plan)
    # "single": one PostgreSQL behind a proxy; "patroni": a 3-member Patroni cluster with
    # synchronous replication, workers on the multi-host URL; "patroni-async": the same with
    # asynchronous replication (losses are reported, not a failure: see tests/chaos/patroni.py).
    database: str = "single"
    first_fault_at: float = 3.0     # seconds into the load (a failover wants a steady rate before it)


DATABASES = ("single", "patroni", "patroni-async")
# The Patroni plan's faults: failovers, half of them with the standbys lagging (nemesis).
PATRONI_PLAN = ("db-failover", "db-failover-lagging")


@dataclass
class Report:
    seed: int
    load_seconds: float
    wall_seconds: float
    verdict: Verdict
    faults: list[dict] = field(default_factory=list)
    exit_codes: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    workdir: str = ""
    database: str = "single"
    failovers: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every verdict empty; with asynchronous replication a run passes when it completed and
        reported (losses are what it shows, not a harness failure)."""
        return self.verdict.ok or self.database == "patroni-async"

    def summary(self) -> str:
        stats = self.verdict.stats
        lines = [f"chaos run: seed {self.seed}, load {self.load_seconds:.0f} s, wall {self.wall_seconds:.0f} s "
                 f"(phases {self.phases}), files in {self.workdir}",
                 f"faults applied: {stats['faults']}",
                 f"operations: {stats['operations']}",
                 f"orders by status: {stats['orders_by_status']}",
                 f"dead letters: {stats['dead_letters_by_reason']}",
                 f"partner feeds: inventory {stats['inventory_messages']}, order events "
                 f"{stats['order_event_messages']}; stock samples {stats['stock_samples']}",
                 self.verdict.summary()]
        if self.database != "single":
            lines[1:1] = [failover_line(f) for f in self.failovers] or ["failovers: none applied"]
        if self.database == "patroni-async":
            lines.append(async_explanation(self.verdict))
        return "\n".join(lines)


def failover_line(f: dict) -> str:
    lagging = f", standbys lagging {f['standbys_lagging_s']:g} s before" if f.get("standbys_lagging_s") else ""
    return (f"failover {f['killed']} -> {f['promoted']} at {f.get('at', '?')}s{lagging}: new primary after "
            f"{f['failover_s']} s, first order after {f.get('first_order_s')} s, throughput back to "
            f">= 80 % of {f.get('baseline_orders_per_s')}/s after {f.get('throughput_recovered_s')} s, relay "
            f"publishing after {f.get('relay_back_s')} s; transactions the dead primary committed beyond the "
            f"fork (not on the new primary): {f.get('commits_beyond_fork')}; "
            f"{f.get('rejoined', '')}")


def async_explanation(verdict: Verdict) -> str:
    lost = len(verdict.problems.get("lost", []))
    others = {k: len(v) for k, v in verdict.problems.items() if v and k != "lost"}
    if verdict.ok:
        return ("asynchronous replication: this time nothing acknowledged was lost (the standby had every "
                "commit when the primary died); nothing guarantees it: a commit is acknowledged before "
                "any standby has it")
    return (f"asynchronous replication: {lost} acknowledged operation(s) lost with the old primary "
            f"(commits it acknowledged before sending their WAL to the standby that was promoted); the other "
            f"verdicts ({others or 'none'}) follow from the same lost commits (work acknowledged to the broker "
            "and gone from the database, events the partners received for rows that no longer exist). "
            "Synchronous replication (--database patroni) is what prevents it")


def worker_environment(options: Options) -> dict[str, str]:
    return {
        "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "INFO",
        "CONVEYOR_HEARTBEAT_SECONDS": "2",               # SIGSTOP for 6 s outlives it
        "CONVEYOR_BLOCKED_CONNECTION_TIMEOUT": "10",
        "CONVEYOR_RETRY_DELAYS": ",".join(map(str, RETRY_DELAYS)),
        "CONVEYOR_MAX_ATTEMPTS": "12",                   # out-of-order messages outwait a fault
        "CONVEYOR_RESERVATION_TTL": f"{options.ttl_s:g}s",
        "CONVEYOR_PREFETCH": "50",
        "CONVEYOR_DELIVERY_LIMIT": str(DELIVERY_LIMIT),
        # Metrics on, as in production: every process serves its endpoint (a free port each),
        # its observer reads the broker and the outbox, one of them reconciles every 10 s.
        "CONVEYOR_HTTP_PORT": "0", "CONVEYOR_HTTP_HOST": "127.0.0.1",
        "CONVEYOR_BROKER_VIEW_INTERVAL": "2", "CONVEYOR_RECONCILE_INTERVAL": "10",
        # The maintenance loop too (partitions ahead, retention, summaries), every 5 s.
        "CONVEYOR_MAINTENANCE_INTERVAL": "5",
    }


def run(options: Options, *, log=print) -> Report:
    started = time.monotonic()
    workdir = options.workdir or tempfile.mkdtemp(prefix="conveyor-chaos-")
    os.makedirs(workdir, exist_ok=True)
    history = History(path=os.path.join(workdir, "history.jsonl"))
    catalogue = make_catalogue(random.Random(f"{options.seed}:catalogue"))
    phases: dict[str, float] = {}
    with _cluster(options, workdir, history) as cluster:
        _start(cluster, catalogue, workdir)
        phases["setup"] = round(time.monotonic() - started, 1)
        broker = f"a {options.brokers}-node RabbitMQ cluster" if options.brokers > 1 else "one RabbitMQ node"
        log(f"chaos: seed {options.seed}, servers ({broker}) and {len(PROCESSES)} workers up in "
            f"{phases['setup']} s; load for {options.seconds:g} s ({workdir})")
        workload = Workload.start(cluster, history, seed=options.seed, catalogue=catalogue, rate=options.rate)
        try:
            faults = _faults(options, cluster, workload.feed, history, log)
            phases["load"] = round(time.monotonic() - started - sum(phases.values()), 1)
            workload.stop_load()
            state, codes = _heal_and_drain(cluster, workload, options, history, workdir)
            phases["drain"] = round(time.monotonic() - started - sum(phases.values()), 1)
            failovers = _failovers(cluster, faults)
        finally:
            workload.stop()
    history.close()
    verdict = check(operations(history.events), state, initial=catalogue.initial)
    report = Report(options.seed, options.seconds, round(time.monotonic() - started, 1), verdict, faults,
                    codes, phases, workdir, options.database, failovers)
    _write_json(os.path.join(workdir, "report.json"), {
        **asdict(report), "verdict": {"ok": verdict.ok, "problems": verdict.problems, "stats": verdict.stats}})
    if verdict.ok and not options.keep and options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
        report.workdir = "(deleted: the run passed)"
    return report


def _cluster(options: Options, workdir: str, history: History) -> Cluster:
    env = worker_environment(options)
    if options.database == "single":
        return Cluster(workdir, processes=PROCESSES, env=env, history=history, brokers=options.brokers)
    if options.brokers > 1:
        raise ValueError("--cluster 3 runs against one PostgreSQL (--database single)")
    if options.database not in DATABASES:
        raise ValueError(f"--database must be one of {DATABASES}")
    from tests.chaos.patroni import PatroniChaosCluster

    return PatroniChaosCluster(workdir, processes=PROCESSES, env=env, history=history,
                               synchronous=options.database == "patroni")


def _failovers(cluster: Cluster, faults: list[dict]) -> list[dict]:
    """Per failover, what Patroni, the relay and the throughput did (tests/chaos/patroni.py)."""
    if not hasattr(cluster, "failovers"):
        return []
    from tests.chaos.patroni import measure

    applied = [f for f in faults if f["kind"] in nemesis.PATRONI_KINDS]
    measured = measure(cluster)  # type: ignore[arg-type]
    return [{"at": f["at"], **m} for f, m in zip(applied, measured, strict=False)]


def _start(cluster: Cluster, catalogue: Catalogue, workdir: str) -> None:
    _prepare(cluster, catalogue)
    cluster.start_all()
    short = observe.wait_for_consumers(cluster, timeout=60)
    if short:
        raise RuntimeError(f"workers did not start: {short}; see the logs in {workdir}")


def _heal_and_drain(cluster: Cluster, workload: Workload, options: Options, history: History,
                    workdir: str) -> tuple[FinalState, dict]:
    """Lift every fault, wait until quiet, stop everything cleanly, read the final state."""
    observe.heal(cluster)
    observe.wait_for_consumers(cluster, timeout=60)
    pending = observe.wait_until_quiet(cluster, workload.shop, retry_delays=RETRY_DELAYS,
                                       timeout=options.drain_timeout)
    if pending:  # a stall: keep what the database and the processes were doing
        _write_json(os.path.join(workdir, "activity.json"), cluster.activity())
        for name in cluster.processes:
            cluster.dump_stacks(name)
    workload.stop()
    codes = cluster.stop_all()
    for name, code in codes.items():
        if code != 0:
            history.note("cluster", "crash", process=name, code=code, log=cluster.processes[name].log_path,
                         when="stopped with SIGTERM")
    state = observe.final_state(cluster)
    state.not_drained = {**{f"before stop: {k}": v for k, v in pending.items()},
                         **observe.leftovers(cluster, retry_delays=RETRY_DELAYS)}
    state.oversell_samples, state.stock_samples = workload.sampler.violations, workload.sampler.samples
    return state, codes


def _write_json(path: str, data) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2, default=str)


def _prepare(cluster: Cluster, catalogue: Catalogue) -> None:
    """Schema, topology (as the workers will declare it), the partners' queues, the stock."""
    from conveyor.db.migrate import migrate
    from conveyor.workers.bootstrap import declare_topology
    from conveyor.workers.config import Settings

    migrate(cluster.database_url)
    declare_topology(Settings(amqp_urls=tuple(cluster.amqp_urls), retry_delays=RETRY_DELAYS,
                              delivery_limit=DELIVERY_LIMIT,
                              quorum_replicas=cluster.brokers if cluster.brokers > 1 else None))
    connection, channel = cluster.channel()
    try:
        declare_partners(channel)  # before the stock exists: the partner sees version 1
    finally:
        connection.close()
    with cluster.admin() as conn, conn.transaction():
        with conn.cursor() as cur:
            skus = list(catalogue.initial)
            cur.executemany("INSERT INTO products (tenant_id, sku, price) VALUES (%s, %s, %s)",
                            [(TENANT, s, catalogue.prices[s]) for s in skus])
            cur.executemany("INSERT INTO stock_levels (tenant_id, sku, on_hand, last_cause) "
                            "VALUES (%s, %s, %s, 'chaos-seed')", [(TENANT, s, catalogue.initial[s]) for s in skus])


def _faults(options: Options, cluster: Cluster, feed: OrderFeed, history: History, log) -> list[dict]:
    """Apply the seeded schedule while the load runs; returns what was applied."""
    load_started = time.monotonic()
    applied, late = [], 0.0
    for fault in nemesis.schedule(options.seed, duration=options.seconds, kinds=options.kinds, gap=options.gap,
                                  holds=options.holds, start=options.first_fault_at):
        # A fault that took longer than its hold (a broker boot) pushes the rest back, so the
        # gaps stay; what no longer fits before the end of the load is left out.
        if fault.at + late + fault.hold > options.seconds - 2:
            break
        _tick_until(cluster, load_started + fault.at + late)
        at = time.monotonic()
        try:
            done = nemesis.apply(fault, cluster, burst=feed.burst)
        except Exception as error:  # noqa: BLE001 - a fault that could not be applied is reported
            history.note("nemesis", f"error {fault.kind}", error=f"{type(error).__name__}: {str(error)[:300]}")
            log(f"chaos: {fault.kind} could not be applied: {error}")
            continue
        if "skipped" in done.detail:  # e.g. no lock holder seen in time: not counted as applied
            history.note("nemesis", f"skipped {fault.kind}", **done.detail)
            log(f"chaos: {at - load_started:6.1f}s {fault.kind} skipped: {done.detail['skipped']}")
            continue
        history.note("nemesis", fault.kind, hold=fault.hold, **done.detail)
        _tick_until(cluster, at + fault.hold)
        late = max(late, time.monotonic() - load_started - fault.at - fault.hold)
        try:
            history.note("nemesis", f"heal {fault.kind}", **done.heal())
        except Exception as error:  # noqa: BLE001 - the final heal lifts it again
            history.note("nemesis", f"error heal {fault.kind}", error=f"{type(error).__name__}: {str(error)[:300]}")
        applied.append({"at": round(at - load_started, 1), "kind": fault.kind, "hold": fault.hold, **done.detail})
        log(f"chaos: {at - load_started:6.1f}s {fault.kind} {done.detail}")
    _tick_until(cluster, load_started + options.seconds)
    return applied


def _tick_until(cluster: Cluster, deadline: float) -> None:
    while True:
        cluster.supervise()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(0.05, remaining))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", 600)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 20)))
    parser.add_argument("--rate", type=float, default=30.0, help="order.created per second")
    parser.add_argument("--kinds", help="fault kinds, comma-separated (default: every kind of the --database: "
                                        f"{','.join(nemesis.KINDS)} on a single server, "
                                        f"{','.join(PATRONI_PLAN)} on Patroni)")
    parser.add_argument("--database", choices=DATABASES, default=os.environ.get("CHAOS_DATABASE", "single"),
                        help="one PostgreSQL (default), or a Patroni cluster with synchronous or asynchronous "
                             "replication (failovers under load)")
    parser.add_argument("--cluster", type=int, choices=(1, 3), default=int(os.environ.get("CHAOS_CLUSTER") or 1),
                        metavar="N", help="RabbitMQ nodes: 1 (default), or 3: the cluster plan, whose default kinds "
                                          "are " + ", ".join(nemesis.CLUSTER_KINDS) + " and every single-node "
                                          "kind but broker-restart (tests/chaos/rabbit_plan.py)")
    parser.add_argument("--gap", default=None,
                        help="seconds between faults, LOW,HIGH (default 1.5,5; 20,30 on Patroni)")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for quiet")
    parser.add_argument("--workdir", help="keep the run's files here")
    parser.add_argument("--keep", action="store_true", help="keep the run's files even when it passes")
    args = parser.parse_args(argv)
    patroni = args.database != "single"
    kinds = args.kinds or ",".join(PATRONI_PLAN if patroni else nemesis.CLUSTER_PLAN if args.cluster > 1
                                   else nemesis.KINDS)
    gap = tuple(float(g) for g in (args.gap or ("20,30" if patroni else "1.5,5")).split(","))
    options = Options(seconds=args.seconds, seed=args.seed, rate=args.rate,
                      kinds=tuple(k for k in kinds.split(",") if k), drain_timeout=args.drain_timeout,
                      workdir=args.workdir, keep=args.keep, database=args.database, gap=(gap[0], gap[1]),
                      first_fault_at=20.0 if patroni else 3.0, brokers=args.cluster)
    report = run(options)
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
