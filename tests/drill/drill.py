"""The restore drill, one run end to end (docs/backup.md, "The restore drill").

1. A PostgreSQL of our own with WAL archiving into a pgBackRest repository of our own, a
   vhost, ``conveyor db migrate``, ``stanza-create``; two order workers and a relay with the
   expirer (``conveyor run``), the chaos harness's shop placing orders at ``rate`` per second.
2. A full backup while the orders flow; more orders; T recorded exactly (``point.mark``:
   checksums of every table and the inbox at T); ``conveyor backup check`` archives the WAL
   holding T; more orders: these are committed after T.
3. The disaster: the data directory lost (the server killed, its directory deleted) or a
   table dropped. The workers are stopped; the shop keeps publishing into RabbitMQ.
4. ``plan_restore`` + ``restore`` to T into a fresh directory, start it, wait for promotion.
   Proof: every table's checksum equals T's, the inbox is T's, ``conveyor reconcile`` clean.
5. The orders committed after T are gone from the database, and their messages were acked:
   the shop republishes what it sent that the restored inbox does not know (same message
   ids; the inbox drops any copy it already has). The workers resume on the restored
   database, consume what waited in RabbitMQ and the republished orders; the chaos checker
   finds nothing lost, doubled or oversold.

RPO as measured: the disaster's time minus the newest commit in the archive (what restoring
to the latest point would have lost); the gap between T and the newest commit in the
restored cluster. RTO: the disaster until the workers processed a message on the restored
database (restore, recovery, restart; not the time a human needs to notice).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

import psycopg

from conveyor import devservices
from conveyor.db import backup
from conveyor.db.checksum import table_checksums
from tests.chaos import observe
from tests.chaos.checker import check
from tests.chaos.clients import OrderFeed, Sampler, Sender
from tests.chaos.cluster import ROOT
from tests.chaos.history import History, operations
from tests.chaos.plans import created, make_catalogue
from tests.chaos.run import Options as ChaosOptions
from tests.chaos.run import worker_environment
from tests.drill import point
from tests.drill.cluster import DrillCluster, Heartbeat, newest_heartbeat, prepare
from tests.drill.server import ArchivingPostgres

PROCESSES = {"orders-a": ("orders",), "orders-b": ("orders",), "relay": ("relay", "expirer")}
RETRY_DELAYS = (1, 2, 4)
DELIVERY_LIMIT = 20
# The checker's verdicts that hold across a restore. Left out: relay_inventory and
# relay_orders, because partners did see the events of the orders committed after T before
# the disaster and see them again, re-decided, after the replay (docs/backup.md says why).
VERDICTS = ("lost", "phantom", "unfinished", "state_machine", "duplicates", "oversell", "conservation",
            "drained", "crashes")
Disaster = Literal["lost-datadir", "drop-table"]
DROPPED_TABLE = "orders.order_lines"


@dataclass(frozen=True)
class Options:
    disaster: Disaster = "lost-datadir"
    seed: int = 1
    rate: float = 20.0               # order.created per second
    warmup_s: float = 4.0            # orders before the full backup
    before_t_s: float = 3.0          # orders between the backup and T
    after_t_s: float = 4.0           # orders committed after T, before the disaster
    resume_s: float = 3.0            # orders after the workers resumed
    archive_timeout_s: int = 5       # the drill's archive_timeout (deploy/: 60 s)
    ttl_s: float = 4.0               # reservation TTL: unpaid orders expire (no shop pays)
    drain_timeout_s: float = 60.0
    workdir: str | None = None
    keep: bool = False


@dataclass
class Report:
    ok: bool = False
    disaster: str = ""
    target: str = ""
    checksums_equal: bool = False
    tables: int = 0
    mismatched_tables: list[str] = field(default_factory=list)
    inbox_equal: bool = False
    reconcile_clean: bool = False
    orders: dict = field(default_factory=dict)
    rpo: dict = field(default_factory=dict)
    rto: dict = field(default_factory=dict)
    backup: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    workdir: str = ""


def run(options: Options, *, log=print) -> Report:
    report = Report(disaster=options.disaster)
    workdir = options.workdir or tempfile.mkdtemp(prefix="conveyor-drill-")
    os.makedirs(workdir, exist_ok=True)
    report.workdir = workdir
    history = History(path=os.path.join(workdir, "history.jsonl"))
    clock = Clock(log)
    with ExitStack() as stack:
        services = stack.enter_context(devservices.provide_services(log=lambda line: log(f"drill: {line}")))
        amqp_url = stack.enter_context(devservices.fresh_vhost(services, prefix="conveyor-drill"))
        server = stack.enter_context(ArchivingPostgres(archive_timeout_s=options.archive_timeout_s))
        env = worker_environment(ChaosOptions(ttl_s=options.ttl_s))
        cluster = stack.enter_context(DrillCluster(workdir, server=server, amqp_url=amqp_url, processes=PROCESSES,
                                                   env=env, history=history))
        _drill(options, report, cluster, server, history, clock)
    history.close()
    report.phases = clock.phases
    if report.ok and not options.keep and options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
        report.workdir = "(deleted: the drill passed)"
    return report


class Clock:
    """Elapsed time per phase, and progress lines."""

    def __init__(self, log) -> None:
        self.log = log
        self.started = self.mark_at = time.monotonic()
        self.phases: dict[str, float] = {}

    def phase(self, name: str, line: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(now - self.mark_at, 2)
        self.mark_at = now
        self.log(f"drill: {now - self.started:6.1f}s {line}")


def _drill(options: Options, report: Report, cluster: DrillCluster, server: ArchivingPostgres, history: History,
           clock: Clock) -> None:
    catalogue = make_catalogue(random.Random(f"{options.seed}:catalogue"))
    prepare(cluster, catalogue, retry_delays=RETRY_DELAYS, delivery_limit=DELIVERY_LIMIT)
    pgbackrest = server.pgbackrest
    backup.stanza_create(pgbackrest)
    backup.check(pgbackrest)
    cluster.start_all()
    _wait_for_consumers(cluster)
    clock.phase("setup", f"servers, schema, stanza and {len(PROCESSES)} workers up (port {server.postgres.port})")
    orders: dict = {}
    feed = OrderFeed(cluster.amqp_url, history, seed=options.seed, catalogue=catalogue, rate=options.rate,
                     orders=orders)
    sampler = Sampler(cluster.database_url, history)
    heartbeat = Heartbeat(cluster.heartbeat_url)
    for thread in (feed, sampler, heartbeat):
        thread.start()
    try:
        _scenario(options, report, cluster, server, history, clock, feed)
    finally:
        for thread in (feed, sampler, heartbeat):
            thread.stop.set()
        for thread in (feed, sampler, heartbeat):
            thread.join(30)
    _verdict(report, cluster, history, sampler, catalogue.initial, clock)


def _scenario(options: Options, report: Report, cluster: DrillCluster, server: ArchivingPostgres,
              history: History, clock: Clock, feed: OrderFeed) -> None:
    pgbackrest = server.pgbackrest
    _tick(cluster, options.warmup_s)
    made = backup.run_backup(pgbackrest, "full")
    report.backup = {"label": made.label, "type": made.type, "size": made.size, "repo_size": made.repo_size,
                     "seconds": None}
    clock.phase("backup", f"full backup {made.label} ({made.size:,} bytes, {made.repo_size:,} in the repository) "
                          f"with {feed.placed} orders placed so far")
    report.backup["seconds"] = clock.phases["backup"]
    _tick(cluster, max(options.before_t_s, 1.2))  # T must fall in a later second than the backup's end
    at_t = point.mark(cluster.database_url)
    report.target = at_t.at.isoformat()
    clock.phase("mark", f"T = {at_t.at.isoformat()}: {len(at_t.checksums)} tables checksummed, "
                        f"{len(at_t.inbox)} messages processed (barrier waited {at_t.lock_wait_s} s)")
    _tick(cluster, 0.3)  # a commit after T, then archive the WAL holding T
    backup.check(pgbackrest)
    clock.phase("archive", "conveyor backup check: the WAL holding T is archived")
    _tick(cluster, options.after_t_s)
    disaster_at, started, at_disaster = _disaster(options.disaster, cluster, server)
    clock.phase("after_t", f"disaster ({options.disaster}) with {len(at_disaster)} messages processed")
    plan, restored_s = _restore(cluster, server, at_t.at)
    clock.phase("restore", f"restored backup {plan.backup.label} to T in {restored_s:.1f} s and promoted")
    _prove(report, cluster, at_t, at_disaster, plan, disaster_at)
    clock.phase("prove", f"checksums equal: {report.checksums_equal}, inbox equal: {report.inbox_equal}, "
                         f"reconcile clean: {report.reconcile_clean}")
    report.orders.update(_replay(cluster, history, feed.orders, at_t.inbox, at_disaster))
    cluster.start_all()
    _wait_for_consumers(cluster)
    _wait_processed(cluster, len(at_t.inbox))
    report.rto = {"seconds": round(time.monotonic() - started, 2), "restore_s": restored_s}
    clock.phase("resume", f"workers consuming on the restored database, RTO {report.rto['seconds']} s; "
                          f"{report.orders['republished']} orders republished")
    _tick(cluster, options.resume_s)
    feed.stop.set()
    feed.join(30)
    pending = observe.wait_until_quiet(cluster, _Quiet(), retry_delays=RETRY_DELAYS, timeout=options.drain_timeout_s)
    report.problems["not quiet"] = [f"{k}: {v}" for k, v in pending.items()]
    clock.phase("drain", f"drained ({'quiet' if not pending else pending})")


def _disaster(kind: Disaster, cluster: DrillCluster,
              server: ArchivingPostgres) -> tuple[datetime, float, frozenset[str]]:
    """What the database held just before (the drill's knowledge, not the DBA's), then the
    disaster (its wall-clock and monotonic time); the workers are stopped after it (the
    shop goes on publishing)."""
    at_disaster = point.inbox_ids(cluster.database_url)
    disaster_at, started = datetime.now(timezone.utc), time.monotonic()
    if kind == "lost-datadir":
        server.postgres.stop(mode="immediate")
        shutil.rmtree(server.postgres.data_directory)
    else:
        with psycopg.connect(cluster.database_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {DROPPED_TABLE} CASCADE")
    # Stopped hard, as a process manager would for a broken deployment: unacked deliveries
    # go back to their queues (a SIGTERM now would wait out the expirer's pool timeout).
    cluster.kill_all()
    if kind == "drop-table":
        server.postgres.stop(mode="fast")
    return disaster_at, started, at_disaster


def _restore(cluster: DrillCluster, server: ArchivingPostgres, target: datetime) -> tuple[backup.RestorePlan, float]:
    started = time.monotonic()
    plan = backup.plan_restore(server.pgbackrest, target)
    destination = os.path.join(server.workdir, f"restored-{int(time.time())}")
    backup.restore(server.pgbackrest, plan, destination)
    server.postgres.use_data_directory(destination)
    server.write_config()  # pg1-path: archive-push of the new timeline reads the new directory
    server.postgres.start()
    _wait_promoted(server)
    return plan, round(time.monotonic() - started, 2)


def _prove(report: Report, cluster: DrillCluster, at_t: point.Point, at_disaster: frozenset[str],
           plan: backup.RestorePlan, disaster_at: datetime) -> None:
    """The restored database is T's: checksums, inbox, reconcile; and the RPO figures."""
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        restored = table_checksums(conn)
    report.tables = len(at_t.checksums)
    report.mismatched_tables = sorted(name for name in at_t.checksums.keys() | restored.keys()
                                      if at_t.checksums.get(name) != restored.get(name))
    report.checksums_equal = not report.mismatched_tables
    restored_inbox = point.inbox_ids(cluster.database_url)
    report.inbox_equal = restored_inbox == at_t.inbox
    report.reconcile_clean = _reconcile(cluster.database_url)
    after_t = at_disaster - at_t.inbox
    report.orders = {"processed_at_t": len(at_t.inbox), "processed_at_disaster": len(at_disaster),
                     "committed_after_t": len(after_t), "committed_after_t_in_restore": len(after_t & restored_inbox)}
    newest = newest_heartbeat(cluster.heartbeat_url, before=disaster_at)
    latest = plan.window.latest
    report.rpo = {
        # 0 when WAL kept being archived after the disaster (a dropped table: the server ran on)
        "data_loss_window_s": max(0.0, round((disaster_at - latest).total_seconds(), 3)) if latest else None,
        "newest_archived_commit": latest.isoformat() if latest else None,
        "target_gap_s": round((at_t.at - newest).total_seconds(), 3) if newest else None,
        "restored_past_target": bool(newest and newest > at_t.at),
        "disaster_at": disaster_at.isoformat()}


def _reconcile(database_url: str) -> bool:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "conveyor", "reconcile", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode == 0


def _replay(cluster: DrillCluster, history: History, orders: dict, restored_inbox: frozenset[str],
            at_disaster: frozenset[str]) -> dict[str, int]:
    """The shop republishes every order.created it sent (confirmed or uncertain) that the
    restored inbox does not know, under the same message id: the orders committed after T and
    those still in RabbitMQ (the inbox drops the second copy)."""
    import threading

    sent = {op.value["message_id"]: op.value["order_id"] for op in operations(history.events)
            if op.f == "order.created" and op.process == "orders" and op.outcome in ("ok", "info")}
    missing = {message_id: order_id for message_id, order_id in sent.items() if message_id not in restored_inbox}
    sender = Sender(cluster.amqp_url, history, process="replay", stop=threading.Event())
    try:
        for order_id in missing.values():
            sender.send(created(orders[order_id][0]))
    finally:
        sender.close()
    after_t = sum(1 for message_id in missing if message_id in at_disaster)
    return {"republished": len(missing), "republished_committed_after_t": after_t,
            "republished_not_yet_processed": len(missing) - after_t}


def _verdict(report: Report, cluster: DrillCluster, history: History, sampler: Sampler, initial: dict,
             clock: Clock) -> None:
    codes = cluster.stop_all()
    for name, code in codes.items():
        if code != 0:
            history.note("cluster", "crash", process=name, code=code, log=cluster.processes[name].log_path,
                         when="stopped with SIGTERM")
    state = observe.final_state(cluster)
    state.not_drained = observe.leftovers(cluster, retry_delays=RETRY_DELAYS)
    state.oversell_samples, state.stock_samples = sampler.violations, sampler.samples
    verdict = check(operations(history.events), state, initial=initial)
    report.problems.update({name: verdict.problems[name] for name in VERDICTS})
    report.stats = {"orders_by_status": verdict.stats["orders_by_status"],
                    "operations": verdict.stats["operations"], "re_decided": _re_decided(state.order_feed)}
    report.ok = (not any(report.problems.values()) and report.checksums_equal and report.inbox_equal
                 and report.reconcile_clean and not report.rpo.get("restored_past_target", True))
    clock.phase("check", f"verdict: {'PASS' if report.ok else 'FAIL'}")


def _re_decided(feed: list) -> dict:
    """Orders the partners heard decided twice (before the disaster, and after the replay)."""
    decisions: dict[str, set[tuple[str, str]]] = {}
    for message in feed:
        if message.routing_key in ("order.reserved", "order.rejected"):
            decisions.setdefault(message.body["order_id"], set()).add((message.message_id, message.routing_key))
    twice = {o: keys for o, keys in decisions.items() if len(keys) > 1}
    changed = sum(1 for keys in twice.values() if len({key for _, key in keys}) > 1)
    return {"orders_announced_twice": len(twice), "decision_changed": changed}


class _Quiet:
    """``observe.wait_until_quiet`` watches the shop's last event; the drill has no shop."""

    last_event_at = 0.0


def _tick(cluster: DrillCluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cluster.supervise()
        time.sleep(0.05)


def _wait_for_consumers(cluster: DrillCluster) -> None:
    short = observe.wait_for_consumers(cluster, timeout=60)
    if short:
        raise RuntimeError(f"workers did not start consuming: {short}; logs in {cluster.workdir}")


def _wait_processed(cluster: DrillCluster, restored: int, *, timeout: float = 60) -> None:
    """Until the workers processed a message on the restored database."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.supervise()
        if point.inbox_count(cluster.database_url) > restored:
            return
        time.sleep(0.05)
    raise RuntimeError(f"no message processed on the restored database within {timeout:g} s")


def _wait_promoted(server: ArchivingPostgres, *, timeout: float = 120) -> None:
    """Until recovery reached T and the server promoted; a server that refused (e.g. the
    target was not reached) stops the drill with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.postgres.running:
            raise RuntimeError(f"the restored server stopped; see {server.workdir}/postgres.log")
        try:
            with psycopg.connect(server.postgres.database_url, autocommit=True, connect_timeout=3) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.OperationalError:
            row = None  # still starting up
        if row is not None and not row[0]:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the restored server did not finish recovery within {timeout:g} s")
