"""The inbox: message ids already processed, so a redelivery has no second effect.

The inbox is partitioned by week of the day a message was processed (V013), so its retention
drops whole weeks. Its key is (message_id, processed_on): a delivery racing another one of the same
id on the same day meets it in the unique index; a message processed on an earlier day is
found by the NOT EXISTS over the kept partitions. (Two copies racing each other across
midnight UTC would both pass: each handler's own key then refuses the second effect: the
order id, the payment id, the shipment and event, the state machine.)"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from conveyor.db.arrays import int_array, text_array
from conveyor.db.locks import sorted_keys
from conveyor.db.outbox import SET_EVENT_CONTEXT, EventContext

# Today's partition is covered by the unique key (ON CONFLICT); the earlier days by NOT EXISTS,
# whose partitions are pruned to the past ones when the statement starts (the ones made ahead
# are never probed).
TODAY = "(now() AT TIME ZONE 'UTC')::date"
CLAIM = f"""
WITH context AS MATERIALIZED ({SET_EVENT_CONTEXT})
INSERT INTO inbox (message_id, handler)
SELECT %(message_id)s, %(handler)s FROM context
WHERE NOT EXISTS (SELECT FROM inbox i WHERE i.message_id = %(message_id)s AND i.processed_on < {TODAY})
ON CONFLICT (message_id, processed_on) DO NOTHING
RETURNING 1
"""
CLAIM_MANY = f"""
WITH context AS MATERIALIZED ({SET_EVENT_CONTEXT})
INSERT INTO inbox (message_id, handler)
SELECT m.message_id, %(handler)s FROM context, unnest(%(ids)s::text[]) AS m(message_id)
WHERE NOT EXISTS (SELECT FROM inbox i WHERE i.message_id = m.message_id AND i.processed_on < {TODAY})
ON CONFLICT (message_id, processed_on) DO NOTHING
RETURNING message_id
"""
# The same after taking the batch's stock locks in one sorted pass (conveyor.db.locks): the CTE is
# computed once, before the first inbox row (it joins every row), and the aggregate runs
# the locks in key order. One round trip instead of two.
CLAIM_MANY_AFTER_LOCKING = f"""
WITH locked AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(k)) AS n FROM unnest(%(keys)s::bigint[]) AS k
), context AS MATERIALIZED ({SET_EVENT_CONTEXT})
INSERT INTO inbox (message_id, handler)
SELECT m.message_id, %(handler)s FROM locked, context, unnest(%(ids)s::text[]) AS m(message_id)
WHERE NOT EXISTS (SELECT FROM inbox i WHERE i.message_id = m.message_id AND i.processed_on < {TODAY})
ON CONFLICT (message_id, processed_on) DO NOTHING
RETURNING message_id
"""
SEEN = "SELECT message_id FROM inbox WHERE message_id = ANY(%(ids)s)"


class Inbox:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def claim(self, message_id: str, *, handler: str, context: EventContext | None = None) -> bool:
        """Record the message as processed (and ``context`` as the transaction's, for the events
        SQL writes); False when it already was."""
        params = {"message_id": message_id, "handler": handler, **(context or EventContext()).params()}
        return self._conn.execute(CLAIM, params).fetchone() is not None

    def claim_many(self, message_ids: list[str], *, handler: str,
                   after_locking: Iterable[tuple[str, str]] = (), context: EventContext | None = None) -> set[str]:
        """Record distinct message ids as processed, first taking the stock locks of the
        (tenant, SKU) pairs ``after_locking`` (and ``context`` as the transaction's); returns
        the ids that were new."""
        keys = sorted_keys(after_locking)
        params = {"handler": handler, "ids": text_array(message_ids), **(context or EventContext()).params()}
        if keys and message_ids:
            cursor = self._conn.execute(CLAIM_MANY_AFTER_LOCKING, {"keys": int_array(keys), **params})
        else:
            cursor = self._conn.execute(CLAIM_MANY, params)
        return {row[0] for row in cursor}

    def seen(self, message_ids: list[str]) -> set[str]:
        return {row[0] for row in self._conn.execute(SEEN, {"ids": message_ids})}
