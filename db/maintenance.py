"""One maintenance pass over the data (V013, docs/data-lifecycle.md): partitions created
ahead, retention by dropping whole partitions (the inbox, the transition log) or in small
batches where a table is not partitioned (ledger versions, the DLQ audit trail, personal
data of finished orders), and the daily summaries of the recent days.

The work is done by SECURITY DEFINER functions of the ``maintenance`` schema, so the
worker role, which may change no schema, can run a pass and nothing more. Each step is its
own short transaction: a pass interrupted half-way leaves nothing half-done, and the next
one carries on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg

from conveyor.db.errors import wrap_exceptions

MAINTAIN_PARTITIONS = "SELECT maintenance.conveyor_maintain_partitions(%(months)s, %(days)s, %(wait_ms)s)"
DROP_PARTITIONS = """
SELECT dropped, row_estimate
FROM maintenance.conveyor_drop_partitions(%(parent)s::regclass, make_interval(secs => %(retention)s), %(wait_ms)s)
"""
COMPACT_LEDGER = "SELECT maintenance.conveyor_compact_ledger(make_interval(secs => %(retention)s), %(batch)s)"
EXPIRE_DLQ_AUDIT = "SELECT maintenance.conveyor_expire_dlq_audit(make_interval(secs => %(retention)s), %(batch)s)"
PURGE_PERSONAL_DATA = "SELECT maintenance.conveyor_purge_personal_data(make_interval(secs => %(retention)s), %(batch)s)"
REFRESH_SUMMARIES = "SELECT maintenance.conveyor_refresh_summaries(%(since)s)"
DEFAULT_ROWS = "SELECT parent, row_count FROM maintenance.conveyor_default_rows()"

# The partitioned tables whose retention drops partitions, and the setting that bounds each.
INBOX, TRANSITIONS = "messaging.inbox", "orders.order_transitions"


@dataclass(frozen=True)
class Plan:
    """What a pass does; a retention of 0 keeps that table's rows."""

    months_ahead: int = 3
    days_ahead: int = 7
    inbox_retention_s: float = 7 * 86_400
    transitions_retention_s: float = 0
    ledger_retention_s: float = 0
    dlq_audit_retention_s: float = 0
    pii_retention_s: float = 0
    summary_days: int = 7
    lock_wait_ms: int = 500
    batch: int = 5_000
    max_batches: int = 100   # per table and pass: a pass stays short, the next one goes on


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)   # sets whose default partition a reader held
    dropped: list[dict] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    summaries: int = 0
    default_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"created": self.created, "busy": self.busy, "dropped": self.dropped, "removed": self.removed,
                "summaries": self.summaries, "default_rows": self.default_rows, "seconds": round(self.seconds, 3)}


def run_pass(conn: psycopg.Connection, plan: Plan, *, today: date | None = None) -> Report:
    """Every step of a pass, in order, on an autocommit connection."""
    started = time.monotonic()
    report = Report()
    with wrap_exceptions(conn):
        made = ensure_partitions(conn, plan.months_ahead, plan.days_ahead, plan.lock_wait_ms)
        report.created = [name for name in made if not name.startswith("busy ")]
        report.busy = [name.removeprefix("busy ") for name in made if name.startswith("busy ")]
        for parent, retention in ((INBOX, plan.inbox_retention_s), (TRANSITIONS, plan.transitions_retention_s)):
            if retention > 0:
                report.dropped += drop_expired(conn, parent, retention, plan.lock_wait_ms)
        for name, statement, retention in (
                ("inventory.stock_movements", COMPACT_LEDGER, plan.ledger_retention_s),
                ("audit.dlq_audit_runs", EXPIRE_DLQ_AUDIT, plan.dlq_audit_retention_s),
                ("privacy.order_customers", PURGE_PERSONAL_DATA, plan.pii_retention_s)):
            if retention > 0:
                report.removed[name] = in_batches(conn, statement, retention, plan)
        since = (today or datetime.now(timezone.utc).date()) - timedelta(days=plan.summary_days)
        report.summaries = refresh_summaries(conn, since)
        report.default_rows = default_rows(conn)
    report.seconds = time.monotonic() - started
    return report


def ensure_partitions(conn: psycopg.Connection, months_ahead: int, days_ahead: int, lock_wait_ms: int) -> list[str]:
    rows = conn.execute(MAINTAIN_PARTITIONS, {"months": months_ahead, "days": days_ahead,
                                              "wait_ms": lock_wait_ms}).fetchall()
    return [name for (name,) in rows]


def drop_expired(conn: psycopg.Connection, parent: str, retention_s: float, lock_wait_ms: int) -> list[dict]:
    rows = conn.execute(DROP_PARTITIONS, {"parent": parent, "retention": retention_s,
                                          "wait_ms": lock_wait_ms}).fetchall()
    return [{"table": parent, "partition": name, "rows": estimate} for name, estimate in rows]


def in_batches(conn: psycopg.Connection, statement: str, retention_s: float, plan: Plan) -> int:
    """Run a batched removal until a batch comes back short (or ``max_batches`` ran)."""
    total = 0
    for _ in range(plan.max_batches):
        row = conn.execute(statement, {"retention": retention_s, "batch": plan.batch}).fetchone()
        removed = int(row[0]) if row else 0
        total += removed
        if removed < plan.batch:
            break
    return total


def refresh_summaries(conn: psycopg.Connection, since: date) -> int:
    row = conn.execute(REFRESH_SUMMARIES, {"since": since}).fetchone()
    return int(row[0]) if row else 0


def default_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Rows each default partition holds (0 unless maintenance fell behind: a pass moves them)."""
    return {parent: int(count) for parent, count in conn.execute(DEFAULT_ROWS).fetchall()}
