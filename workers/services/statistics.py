"""The statistics keeper: every ``CONVEYOR_ANALYZE_INTERVAL`` seconds, ANALYZE the tables that
grew or churned enough since their last ANALYZE (``conveyor.db.statistics``), so cached plans
never outlive the table sizes they were made for, whatever autovacuum does. It runs in every
``conveyor run`` process; an advisory lock lets one of them act at a time."""

from __future__ import annotations

import threading

from conveyor.db.connection import connect
from conveyor.db.errors import DatabaseError
from conveyor.db.statistics import refresh
from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger

log = get_logger("conveyor.statistics")


class StatisticsKeeper:
    def __init__(self, settings: Settings, *, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.interval = settings.analyze_interval
        self.analysed = 0

    def run(self) -> None:
        log.info("statistics_keeper_started", interval_s=self.interval)
        while not self.stop.wait(self.interval):
            self.tick()

    def tick(self) -> list[str] | None:
        try:
            with connect(self.settings.database_url, application_name="conveyor-statistics",
                         lock_timeout_ms=self.settings.lock_timeout_ms,
                         statement_timeout_ms=self.settings.statement_timeout_ms) as conn:
                tables = refresh(conn)
        except DatabaseError as error:  # the next tick tries again
            log.warning("statistics_refresh_failed", error=f"{type(error).__name__}: {str(error)[:300]}")
            return None
        if tables:
            self.analysed += len(tables)
            log.info("statistics_refreshed", tables=tables)
        return tables
