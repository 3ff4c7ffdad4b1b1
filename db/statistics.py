"""Planner statistics Conveyor keeps fresh itself (migration V008).

A freshly migrated database vacuumed while empty says its tables are empty; worker
connections then cache plans made for empty tables and keep them while the tables grow,
until an ANALYZE replaces the statistics (which invalidates those plans in every session).
With autovacuum off, or lagging under a heavy write load, nobody runs that ANALYZE, so
Conveyor does: ``refresh`` analyses the tables that changed enough since their last
ANALYZE, one process at a time.
"""

from __future__ import annotations

from conveyor.db.connection import Connection, transaction

# Constant key for pg_try_advisory_xact_lock: "conveyor statistics".
STATISTICS_LOCK_KEY = 0x636F6E76737461

TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%(key)s)"
REFRESH = "SELECT conveyor_refresh_statistics(%(min_changes)s, %(fraction)s)"


def refresh(conn: Connection, *, min_changes: int = 1_000, fraction: float = 0.2) -> list[str] | None:
    """ANALYZE each table whose rows changed by at least ``min_changes`` and ``fraction`` of its
    row estimate since its last ANALYZE; returns their names, or None when another process
    is doing it right now."""
    with transaction(conn):
        row = conn.execute(TRY_LOCK, {"key": STATISTICS_LOCK_KEY}).fetchone()
        if row is None or not row[0]:
            return None
        return [name for (name,) in conn.execute(REFRESH, {"min_changes": min_changes, "fraction": fraction})]
