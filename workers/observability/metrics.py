"""Every Prometheus metric Conveyor exports: names, labels, help and buckets, in one place.

The code that counts imports these objects; the dashboard and the alert rules in
``deploy/`` may name only what is listed here (``tests/unit/test_dashboard.py`` checks).
With ``--processes N`` every child writes its samples to ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) and the parent's endpoint serves their sum; gauges
say how they combine across processes (``multiprocess_mode``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No `*_created` series: the multiprocess mode of a group has none, so a single process
# shows the same names as a group; the start time is process_start_time_seconds.
disable_created_metrics()

# Latency buckets from 1 ms to 30 s: a batch commits in ~10 ms, a message may wait seconds.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

MESSAGES = Counter("conveyor_messages", "Messages settled, by worker, queue and outcome (as in the logs)",
                   ["worker", "queue", "outcome"])
DEAD_LETTERS = Counter("conveyor_dead_letters", "Messages dead-lettered, by queue and reason class",
                       ["queue", "reason"])
RETRIES = Counter("conveyor_retries", "Messages sent to a delayed-retry tier, by queue and tier",
                  ["queue", "tier"])
BATCH_SECONDS = Histogram("conveyor_batch_seconds", "Time of a batch's database transaction",
                          ["worker"], buckets=SECONDS)
BATCH_SIZE = Histogram("conveyor_batch_size", "Messages per batch", ["worker"], buckets=SIZES)
MESSAGE_AGE = Histogram("conveyor_message_age_seconds",
                        "Publish timestamp to commit, for messages whose publisher set a timestamp",
                        ["worker"], buckets=SECONDS)
BATCH_FALLBACKS = Counter("conveyor_batch_fallbacks", "Batches that failed whole and ran again message by message",
                          ["worker"])
RECONNECTS = Counter("conveyor_reconnects", "Reconnections after a lost connection, by dependency",
                     ["dependency"])

DB_POOL_SIZE = Gauge("conveyor_db_pool_size", "Connections a pool holds", ["pool"], multiprocess_mode="livesum")
DB_POOL_AVAILABLE = Gauge("conveyor_db_pool_available", "Idle connections of a pool", ["pool"],
                          multiprocess_mode="livesum")
DB_POOL_WAITING = Gauge("conveyor_db_pool_waiting", "Callers waiting for a connection", ["pool"],
                        multiprocess_mode="livesum")

OUTBOX_PENDING = Gauge("conveyor_outbox_pending", "Outbox rows not published yet, by stream (exchange)",
                       ["stream"], multiprocess_mode="max")
OUTBOX_LAG = Gauge("conveyor_outbox_lag_seconds", "Age of the oldest unpublished outbox row, by stream",
                   ["stream"], multiprocess_mode="max")
RELAY_PUBLISHED = Counter("conveyor_relay_published", "Outbox rows published and confirmed, by stream",
                          ["stream"])
RELAY_CONFIRM = Histogram("conveyor_relay_confirm_seconds", "Publishing a relay batch until the broker confirmed it",
                          buckets=SECONDS)
RELAY_LEADER = Gauge("conveyor_relay_leader", "1 in the process whose relay holds the lease",
                     multiprocess_mode="livesum")

QUEUE_MESSAGES = Gauge("conveyor_queue_messages", "Messages in a Conveyor queue (the broker's view)",
                       ["queue"], multiprocess_mode="max")
QUEUE_CONSUMERS = Gauge("conveyor_queue_consumers", "Consumers of a Conveyor queue (the broker's view)",
                        ["queue"], multiprocess_mode="max")
BROKER_VIEW_AGE = Gauge("conveyor_broker_view_age_seconds",
                        "Seconds since the queue figures were last read from the broker (stale when large)",
                        multiprocess_mode="min")

# "mostrecent": whichever process ran the newest reconciliation speaks for the group.
RECONCILE_DRIFT = Gauge("conveyor_reconcile_drift", "Rows found drifting by the last periodic reconciliation",
                        ["check"], multiprocess_mode="mostrecent")
RECONCILE_RUNS = Counter("conveyor_reconcile_runs", "Periodic reconciliations run")
RECONCILE_LAST_RUN = Gauge("conveyor_reconcile_last_run_timestamp_seconds",
                           "Unix time of the last periodic reconciliation", multiprocess_mode="max")
OLDEST_TRANSACTION = Gauge("conveyor_db_oldest_transaction_seconds",
                           "Age of the oldest open transaction holding the xmin horizon back",
                           multiprocess_mode="max")

MAINTENANCE_RUNS = Counter("conveyor_maintenance_runs", "Maintenance passes run (partitions, retention, summaries)")
MAINTENANCE_LAST_RUN = Gauge("conveyor_maintenance_last_run_timestamp_seconds",
                             "Unix time of the last maintenance pass that completed", multiprocess_mode="max")
PARTITION_DEFAULT_ROWS = Gauge("conveyor_partition_default_rows",
                               "Rows in a partitioned table's default partition (0 unless maintenance fell behind)",
                               ["table"], multiprocess_mode="mostrecent")
RETENTION_REMOVED = Counter("conveyor_retention_removed_rows", "Rows removed by retention (partitions dropped "
                            "count their estimated rows)", ["table"])

READY = Gauge("conveyor_ready", "1 while the process is ready (connected, consuming, schema current)",
              multiprocess_mode="livemin")
SCHEMA_PENDING = Gauge("conveyor_schema_pending_migrations", "Migrations this code needs that are not applied",
                       multiprocess_mode="max")
UNKNOWN_FIELDS = Counter("conveyor_unknown_fields", "Unknown fields ignored in consumed messages",
                         ["type", "field"])

# Every metric name as a scrape shows it (counters gain _total, histograms _bucket/_sum/_count).
EXPORTED = {
    metric._name: metric._type for metric in (  # noqa: SLF001 - prometheus_client has no public accessor
        MESSAGES, DEAD_LETTERS, RETRIES, BATCH_SECONDS, BATCH_SIZE, MESSAGE_AGE, BATCH_FALLBACKS, RECONNECTS,
        DB_POOL_SIZE, DB_POOL_AVAILABLE, DB_POOL_WAITING, OUTBOX_PENDING, OUTBOX_LAG, RELAY_PUBLISHED,
        RELAY_CONFIRM, RELAY_LEADER, QUEUE_MESSAGES, QUEUE_CONSUMERS, BROKER_VIEW_AGE, RECONCILE_DRIFT,
        RECONCILE_RUNS, RECONCILE_LAST_RUN, OLDEST_TRANSACTION, READY, SCHEMA_PENDING, UNKNOWN_FIELDS,
        MAINTENANCE_RUNS, MAINTENANCE_LAST_RUN, PARTITION_DEFAULT_ROWS, RETENTION_REMOVED)
}


def series_names() -> set[str]:
    """The names a scrape can show: ``conveyor_messages_total``, ``conveyor_batch_seconds_bucket``, …"""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {name + suffix for name, kind in EXPORTED.items() for suffix in suffixes[kind]}


class WorkerMetrics:
    """One consuming worker's series, with the label children cached (a ``labels()`` lookup
    takes a lock and a dict probe: once per outcome, not once per message)."""

    def __init__(self, worker: str, queue: str) -> None:
        self.worker, self.queue = worker, queue
        self._messages: dict[str, Counter] = {}
        self.batch_seconds = BATCH_SECONDS.labels(worker)
        self.batch_size = BATCH_SIZE.labels(worker)
        self.message_age = MESSAGE_AGE.labels(worker)
        self.fallbacks = BATCH_FALLBACKS.labels(worker)

    def settled(self, outcome: str) -> None:
        child = self._messages.get(outcome)
        if child is None:
            child = self._messages[outcome] = MESSAGES.labels(self.worker, self.queue, outcome)
        child.inc()

    def dead_lettered(self, reason: str) -> None:
        DEAD_LETTERS.labels(self.queue, reason).inc()

    def retried(self, delay_seconds: int) -> None:
        RETRIES.labels(self.queue, f"{delay_seconds}s").inc()
