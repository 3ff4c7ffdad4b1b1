"""The maintenance loop: every ``CONVEYOR_MAINTENANCE_INTERVAL`` one process of the group runs
a pass of ``conveyor.db.maintenance`` (partitions ahead, retention, daily summaries), claimed
in ``periodic_runs`` like the reconciliation, so any number of copies is safe; the partition
functions also take an advisory lock of their own. ``conveyor db maintain`` runs a pass now."""

from __future__ import annotations

import threading

from conveyor.db.connection import connect
from conveyor.db.errors import DatabaseError
from conveyor.db.maintenance import Plan, Report, run_pass
from conveyor.db.periodic import claim
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.metrics import (
    MAINTENANCE_LAST_RUN,
    MAINTENANCE_RUNS,
    PARTITION_DEFAULT_ROWS,
    RETENTION_REMOVED,
)
from conveyor.workers.services.relay.service import default_holder

log = get_logger("conveyor.maintenance")

JOB = "maintenance"


def plan_for(settings: Settings) -> Plan:
    return Plan(months_ahead=settings.partitions_ahead, days_ahead=settings.partitions_ahead_days,
                inbox_retention_s=settings.inbox_retention, transitions_retention_s=settings.transitions_retention,
                ledger_retention_s=settings.ledger_retention, dlq_audit_retention_s=settings.dlq_audit_retention,
                pii_retention_s=settings.pii_retention, summary_days=settings.summary_refresh_days,
                lock_wait_ms=min(settings.lock_timeout_ms, 500))


class Maintainer:
    def __init__(self, settings: Settings, *, stop: threading.Event, holder: str | None = None) -> None:
        self.settings = settings
        self.stop = stop
        self.interval = settings.maintenance_interval
        self.holder = holder or default_holder()

    def run(self) -> None:
        log.info("maintenance_started", interval_s=self.interval)
        wait = min(self.interval, 5.0)  # soon after start: a group that was down catches up
        while not self.stop.wait(wait):
            self.tick()
            wait = self.interval

    def tick(self) -> Report | None:
        """A pass if this process won the claim; its report, else None."""
        try:
            with connect(self.settings.database_url, application_name="conveyor-maintenance",
                         lock_timeout_ms=self.settings.lock_timeout_ms,
                         statement_timeout_ms=max(self.settings.statement_timeout_ms, 300_000)) as conn:
                if not claim(conn, JOB, interval_s=self.interval * 0.9, holder=self.holder):
                    return None
                report = run_pass(conn, plan_for(self.settings))
        except DatabaseError as error:  # the next interval tries again
            log.warning("maintenance_failed", error=f"{type(error).__name__}: {str(error)[:300]}")
            return None
        record(report)
        return report


def record(report: Report) -> None:
    """The pass's figures as metrics and one log line."""
    for dropped in report.dropped:
        RETENTION_REMOVED.labels(dropped["table"]).inc(dropped["rows"])
    for table, removed in report.removed.items():
        RETENTION_REMOVED.labels(table).inc(removed)
    for table, rows in report.default_rows.items():
        PARTITION_DEFAULT_ROWS.labels(table).set(rows)
    MAINTENANCE_RUNS.inc()
    MAINTENANCE_LAST_RUN.set_to_current_time()
    (log.warning if any(report.default_rows.values()) else log.info)("maintained", **report.as_dict())
