"""The one place that wires things together: which workers exist and how a process runs them."""

from __future__ import annotations

import os
import signal
import threading

from conveyor.db.connection import make_pool
from conveyor.workers.config import Settings
from conveyor.workers.handlers import orders as order_worker
from conveyor.workers.handlers import payments as payment_worker
from conveyor.workers.handlers import shipping as shipping_worker
from conveyor.workers.logging import get_logger
from conveyor.workers.observability import endpoint, group, tracing
from conveyor.workers.observability.health import Health
from conveyor.workers.observability.observer import Observer, conveyor_queues
from conveyor.workers.roles import ALL, WORKER_NAMES
from conveyor.workers.runtime.schema_gate import wait_until_migrated
from conveyor.workers.runtime.spec import WorkerSpec
from conveyor.workers.runtime.supervisor import Supervisor
from conveyor.workers.services.expirer import Expirer
from conveyor.workers.services.maintenance import Maintainer
from conveyor.workers.services.reconciler import Reconciler
from conveyor.workers.services.relay import OutboxRelay
from conveyor.workers.services.statistics import StatisticsKeeper

log = get_logger("conveyor.bootstrap")

WORKERS: dict[str, WorkerSpec] = {
    spec.name: spec for spec in (order_worker.SPEC, payment_worker.SPEC, shipping_worker.SPEC)}
if tuple(WORKERS) != WORKER_NAMES:  # the names the CLI lists without importing this module
    raise RuntimeError(f"conveyor.workers.roles.WORKER_NAMES {WORKER_NAMES} != the specs {tuple(WORKERS)}")


def declare_topology(settings: Settings) -> None:
    """Declare every exchange and every worker's queues (what workers also do at start)."""
    from conveyor.workers.runtime import amqp, topology

    connection = amqp.connect(settings, name="declare")
    try:
        channel = connection.channel()
        topology.declare_exchanges(channel, quorum_replicas=settings.quorum_replicas)
        for spec in WORKERS.values():
            topology.declare_worker(channel, spec, retry_delays=settings.retry_delays,
                                    delivery_limit=settings.delivery_limit, quorum_replicas=settings.quorum_replicas)
    finally:
        connection.close()


def check_names(names: list[str]) -> None:
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise ValueError(f"unknown worker(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")


def build_supervisor(names: list[str], settings: Settings, *, health: Health | None = None,
                     observe: bool = False) -> Supervisor:
    """The process's threads for ``names``; ``observe``: also read the broker's and the
    database's figures for the metrics (when something serves them)."""
    check_names(names)
    if tracing.configure():  # conveyor[otel] and OTEL_* asked for spans
        log.info("tracing_enabled", exporter=os.environ.get("OTEL_TRACES_EXPORTER", "otlp"))
    pool = make_pool(settings.database_url, size=max(2, len(names) + 1), name="conveyor-workers",
                     lock_timeout_ms=settings.lock_timeout_ms,
                     statement_timeout_ms=settings.statement_timeout_ms)
    supervisor = Supervisor(settings, pool, health=health or Health(liveness_timeout=settings.liveness_timeout))
    supervisor.health.watch_threads(supervisor.dead_threads)
    for name in names:
        if name in WORKERS:
            supervisor.add_worker(WORKERS[name])
        elif name == "relay":
            relay = OutboxRelay(settings, stop=supervisor.stop, batch_size=settings.relay_batch_size,
                                rotate_after_rows=settings.outbox_rotate_rows, health=supervisor.health)
            supervisor.add_service("relay", relay.run)
        elif name == "expirer":
            supervisor.add_service("expirer", Expirer(settings, pool, stop=supervisor.stop).run)
    if settings.analyze_interval > 0:  # every process: an advisory lock lets one act at a time
        supervisor.add_service("statistics", StatisticsKeeper(settings, stop=supervisor.stop).run)
    if settings.reconcile_interval > 0:  # every process asks; one per interval runs it
        supervisor.add_service("reconciler", Reconciler(settings, stop=supervisor.stop).run)
    if settings.maintenance_interval > 0:  # partitions ahead, retention, summaries; one per interval
        supervisor.add_service("maintenance", Maintainer(settings, stop=supervisor.stop).run)
    if observe:
        queues = conveyor_queues(WORKERS.values(), settings.retry_delays)
        observer = Observer(settings, stop=supervisor.stop, health=supervisor.health, queues=queues, pool=pool)
        supervisor.add_service("observer", observer.run)
    return supervisor


def run(names: list[str], settings: Settings) -> int:
    """One process: the endpoint (if configured) from the start, so the probes answer while
    safe start waits; then the workers until SIGTERM/SIGINT."""
    health = Health(liveness_timeout=settings.liveness_timeout)
    server = endpoint.serve_process(settings, health)
    status_dir = os.environ.get(group.STATUS_DIR_ENV)  # a child of `--processes N`
    reporting = threading.Event()
    if status_dir:
        threading.Thread(target=group.write_status_until, args=(health, reporting), name="group-status",
                         kwargs={"directory": status_dir}, daemon=True).start()
    try:
        if not _schema_ready(settings, health):
            return 0  # stopped (SIGTERM/SIGINT) while waiting for the migrations
        supervisor = build_supervisor(names or list(ALL), settings, health=health,
                                      observe=server is not None or bool(status_dir))
        supervisor.install_signal_handlers()
        try:
            return supervisor.wait()
        finally:
            supervisor.pool.close()
    finally:
        reporting.set()
        if server is not None:
            server.close()


def _schema_ready(settings: Settings, health: Health) -> bool:
    """Safe start (``runtime/schema_gate.py``): wait, stoppable by a signal, until the
    database's schema is what this code needs; the readiness probe says what is missing."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    health.set_problem("schema", "not checked yet")
    try:
        return wait_until_migrated(settings.database_url, stop=stop, interval=settings.schema_check_interval,
                                   report=lambda problem: health.set_problem("schema", problem))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
