"""The periodic reconciliation: every ``CONVEYOR_RECONCILE_INTERVAL`` one process of the group
runs the checks of ``conveyor reconcile`` (``conveyor.db.reconcile``) and exports what drifted
as ``conveyor_reconcile_drift{check}`` (0 when clean); the alert rules watch it. Each process
asks once per interval; the claim in ``periodic_runs`` (V012) lets one of them run it."""

from __future__ import annotations

import threading

from conveyor.db.connection import connect
from conveyor.db.errors import DatabaseError
from conveyor.db.periodic import claim
from conveyor.db.reconcile import run_checks
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.metrics import RECONCILE_DRIFT, RECONCILE_LAST_RUN, RECONCILE_RUNS
from conveyor.workers.services.relay.service import default_holder

log = get_logger("conveyor.reconciler")

JOB = "reconcile"


class Reconciler:
    def __init__(self, settings: Settings, *, stop: threading.Event, holder: str | None = None) -> None:
        self.settings = settings
        self.stop = stop
        self.interval = settings.reconcile_interval
        self.holder = holder or default_holder()

    def run(self) -> None:
        log.info("reconciler_started", interval_s=self.interval)
        # Ask soon after start (a restarted group reports at once), then once per interval.
        wait = min(self.interval, 5.0)
        while not self.stop.wait(wait):
            self.tick()
            wait = self.interval

    def tick(self) -> dict[str, int] | None:
        """Run the checks if this process won the claim; the rows found per check, else None."""
        try:
            with connect(self.settings.database_url, application_name="conveyor-reconciler",
                         lock_timeout_ms=self.settings.lock_timeout_ms,
                         statement_timeout_ms=max(self.settings.statement_timeout_ms, 300_000)) as conn:
                if not claim(conn, JOB, interval_s=self.interval * 0.9, holder=self.holder):
                    return None
                with conn.transaction():  # one snapshot for every check
                    found = {name: len(rows) for name, rows in run_checks(conn).items()}
        except DatabaseError as error:  # the next interval tries again
            log.warning("reconcile_failed", error=f"{type(error).__name__}: {str(error)[:300]}")
            return None
        for name, count in found.items():
            RECONCILE_DRIFT.labels(name).set(count)
        RECONCILE_RUNS.inc()
        RECONCILE_LAST_RUN.set_to_current_time()
        (log.warning if any(found.values()) else log.info)("reconciled", drift=found)
        return found
