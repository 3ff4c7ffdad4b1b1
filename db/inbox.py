"""The inbox: message ids already processed, so a redelivery has no second effect."""

from __future__ import annotations

import psycopg

CLAIM = """
INSERT INTO inbox (message_id, handler) VALUES (%s, %s)
ON CONFLICT (message_id) DO NOTHING
RETURNING 1
"""
CLAIM_MANY = """
INSERT INTO inbox (message_id, handler) SELECT unnest(%b::text[]), %s
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""
SEEN = "SELECT message_id FROM inbox WHERE message_id = ANY(%s)"


class Inbox:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def claim(self, message_id: str, *, handler: str) -> bool:
        """Record the message as processed; False when it already was."""
        return self._conn.execute(CLAIM, (message_id, handler)).fetchone() is not None

    def claim_many(self, message_ids: list[str], *, handler: str) -> set[str]:
        """Record distinct message ids as processed; returns those that were new."""
        return {row[0] for row in self._conn.execute(CLAIM_MANY, (message_ids, handler))}

    def seen(self, message_ids: list[str]) -> set[str]:
        return {row[0] for row in self._conn.execute(SEEN, (message_ids,))}
