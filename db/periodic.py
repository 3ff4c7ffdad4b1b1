"""Periodic jobs one process of a group runs per interval (V012's ``periodic_runs``).

Every process asks on its own schedule; ``claim`` moves the job's ``last_run_at`` forward
only when the interval has passed, in one UPDATE, so of several processes asking at once
exactly one wins and runs it.
"""

from __future__ import annotations

import psycopg

from conveyor.db.errors import wrap_exceptions

CLAIM = """
UPDATE periodic_runs SET last_run_at = now(), last_holder = %(holder)s, runs = runs + 1
WHERE name = %(name)s AND last_run_at <= now() - make_interval(secs => %(interval)s)
RETURNING runs
"""


def claim(conn: psycopg.Connection, name: str, *, interval_s: float, holder: str) -> bool:
    """True when this caller should run ``name`` now (autocommit: the claim commits at once)."""
    with wrap_exceptions(conn):
        return conn.execute(CLAIM, {"name": name, "interval": interval_s, "holder": holder}).fetchone() is not None
