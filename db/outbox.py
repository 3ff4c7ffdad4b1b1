"""The outbox: events written in the business transaction, published later by the relay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

ADD = """
INSERT INTO outbox (message_id, exchange, routing_key, correlation_id, payload)
VALUES (%s, %s, %s, %s, %s)
"""
NOTIFY = "SELECT pg_notify('conveyor_outbox', '')"
CLAIM = """
SELECT id, message_id, exchange, routing_key, correlation_id, payload::text, created_at
FROM outbox WHERE sent_at IS NULL
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)"
PURGE_SENT = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => %s) LIMIT %s)
"""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message_id: str
    exchange: str
    routing_key: str
    correlation_id: str | None
    payload: str
    created_at: object


class Outbox:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._notified = False

    def add(self, *, exchange: str, routing_key: str, payload: dict, correlation_id: str | None) -> str:
        message_id = str(uuid.uuid4())
        self._conn.execute(ADD, (message_id, exchange, routing_key, correlation_id, Jsonb(payload)))
        if not self._notified:
            # One NOTIFY per transaction: it is a wake-up for the relay, not the data.
            self._conn.execute(NOTIFY)
            self._notified = True
        return message_id

    def claim(self, limit: int) -> list[OutboxRow]:
        rows = self._conn.execute(CLAIM, (limit,)).fetchall()
        return [OutboxRow(r[0], str(r[1]), *r[2:]) for r in rows]

    def mark_sent(self, ids: list[int]) -> None:
        if ids:
            self._conn.execute(MARK_SENT, (ids,))

    def purge_sent(self, *, older_than_seconds: float, limit: int = 10_000) -> int:
        return self._conn.execute(PURGE_SENT, (older_than_seconds, limit)).rowcount
