"""The outbox: events written in the business transaction, published later by the relay.

Two kinds of rows share it: order events (``Outbox.add``; the order intake writes its
outcome events in ``conveyor.db.intake``) and inventory changes (written by the
``stock_levels_changes_on_*`` triggers, V007). The relay claims pending rows in id order,
publishes them and deletes them once the broker confirmed them.

The table rotates through three partitions (V009): ``rotate`` moves writers on to the next
slot once the current one took enough rows and TRUNCATEs the drained ones, so the dead rows
the deletes leave behind never depend on VACUUM, however long a transaction pins the
xmin horizon (docs/performance.md, "churn").
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from conveyor.db.notify import NOTIFY_OUTBOX

ADD = """
INSERT INTO outbox (message_id, exchange, routing_key, correlation_id, payload, ordering_key, message_type, headers)
VALUES (%(message_id)s, %(exchange)s, %(routing_key)s, %(correlation_id)s, %(payload)s, %(ordering_key)s,
        %(message_type)s, %(headers)s)
"""
# Never page by `id > last_seen`: ids are taken at insert but become visible at commit.
# Within a look-ahead window of the oldest pending rows, at most `per_key` rows of each
# ordering key are claimed (its oldest), so a hot SKU's backlog cannot crowd the others
# out of a batch; keys (and keyless rows) the broker just refused are left for later.
CLAIM = """
WITH ahead AS (
    SELECT id, ordering_key FROM outbox
    WHERE sent_at IS NULL
      AND (ordering_key IS NULL OR ordering_key <> ALL(%(skip_keys)s::text[]))
      AND id <> ALL(%(skip_ids)s::bigint[])
    ORDER BY id
    LIMIT %(lookahead)s
), fair AS (
    SELECT id FROM (
        SELECT id, ordering_key, row_number() OVER (PARTITION BY ordering_key ORDER BY id) AS n
        FROM ahead) ranked
    WHERE ordering_key IS NULL OR n <= %(per_key)s
    ORDER BY id
    LIMIT %(limit)s
)
SELECT o.id, o.message_id, o.exchange, o.routing_key, o.correlation_id, o.payload::text, o.created_at,
       o.ordering_key, o.message_type, o.headers
FROM outbox o
WHERE o.id IN (SELECT id FROM fair) AND o.sent_at IS NULL
ORDER BY o.id
FOR UPDATE OF o SKIP LOCKED
"""
# Confirmed rows are deleted at once: the ledger (stock_movements) and the logs keep the
# history, and a table that only holds what is pending stays small.
SETTLE = "DELETE FROM outbox WHERE id = ANY(%(ids)s)"
ROTATE = "SELECT action, slot FROM conveyor_outbox_rotate(%(rotate_after)s)"
# How much is pending (``conveyor relay status``) is read in ``conveyor.db.views``.


@dataclass(frozen=True)
class EventContext:
    """The consumed message a transaction processes, for the events written by SQL (the stock
    trigger's partner rows read it through ``messaging.conveyor_event_headers()``, V014)."""

    causation_id: str = ""
    traceparent: str = ""
    tracestate: str = ""

    def params(self) -> dict[str, str]:
        return {"causation_id": self.causation_id, "traceparent": self.traceparent, "tracestate": self.tracestate}


# Transaction-local settings (set_config(..., true)): gone at commit or rollback, and reset by a
# rolled-back savepoint. Used as a CTE of the transaction's first statement: no round trip.
SET_EVENT_CONTEXT = """
SELECT set_config('conveyor.causation_id', %(causation_id)s, true),
       set_config('conveyor.traceparent', %(traceparent)s, true),
       set_config('conveyor.tracestate', %(tracestate)s, true)
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message_id: str
    exchange: str
    routing_key: str
    correlation_id: str | None
    payload: str
    created_at: datetime
    ordering_key: str | None = None
    message_type: str | None = None
    headers: dict | None = None   # causation id, trace context (V014)


class Outbox:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._notified = False

    def add(self, *, exchange: str, routing_key: str, payload: dict, correlation_id: str | None,
            ordering_key: str | None = None, message_type: str | None = None,
            headers: dict[str, str] | None = None) -> str:
        """Write an event; events sharing ``ordering_key`` (default: the correlation id,
        i.e. the order) are published in the order they were written."""
        message_id = str(uuid.uuid4())
        self._conn.execute(ADD, {"message_id": message_id, "exchange": exchange, "routing_key": routing_key,
                                 "correlation_id": correlation_id, "payload": Jsonb(payload),
                                 "ordering_key": ordering_key or correlation_id, "message_type": message_type,
                                 "headers": Jsonb(headers) if headers else None})
        if not self._notified:
            # One NOTIFY per transaction: it is a wake-up for the relay, not the data.
            self._conn.execute(NOTIFY_OUTBOX)
            self._notified = True
        return message_id

    def claim(self, limit: int, *, per_key: int | None = None, skip_keys: Collection[str] = (),
              skip_ids: Collection[int] = ()) -> list[OutboxRow]:
        """Lock up to ``limit`` pending rows, oldest first, at most ``per_key`` of each
        ordering key, none of ``skip_keys``/``skip_ids``."""
        rows = self._conn.execute(CLAIM, {
            "limit": limit, "lookahead": limit * 4, "per_key": per_key or limit,
            "skip_keys": list(skip_keys), "skip_ids": list(skip_ids)}).fetchall()
        return [OutboxRow(r[0], str(r[1]), *r[2:]) for r in rows]

    def settle(self, ids: list[int]) -> None:
        """The broker confirmed these rows: they are done."""
        if ids:
            self._conn.execute(SETTLE, {"ids": ids})

    def rotate(self, *, rotate_after: int) -> list[tuple[str, int]]:
        """Truncate the drained slots writers left and move writers on once the current slot
        took ``rotate_after`` rows; returns what was done, e.g. ``[("truncated", 0),
        ("rotated", 2)]`` (``("busy", n)``: slot n is drained but still locked by someone)."""
        rows = self._conn.execute(ROTATE, {"rotate_after": rotate_after}).fetchall()
        return [(action, slot) for action, slot in rows]
