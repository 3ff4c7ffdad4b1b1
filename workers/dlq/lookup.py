"""``dlq show``: one dead letter in full, and what Conveyor knows about its message and order now.

The letter is found through a DLQ session (nothing consumed); the database is asked
whether the inbox has its ``message_id``, what the order looks like, and which earlier
replays, purges or imports touched it (the audit trail).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

from conveyor.db import views
from conveyor.db.audit import AuditLog
from conveyor.db.connection import Connection, connect
from conveyor.db.errors import DatabaseError, wrap_exceptions
from conveyor.db.inbox import Inbox
from conveyor.workers.config import Settings
from conveyor.workers.dlq.reader import DlqSession, Held


@dataclass(frozen=True)
class Found:
    held: Held
    copies: int        # copies of this message_id in the DLQ
    depth: int


def find(settings: Settings, dlq: str, message_id: str) -> Found | None:
    first, copies = None, 0
    with DlqSession(settings, dlq) as session:
        for held in session.snapshot():
            if held.letter.message_id == message_id:
                copies += 1
                first = first or held
        depth = session.depth
    return Found(first, copies, depth) if first else None


def what_conveyor_knows(settings: Settings, held: Held) -> dict:
    """Inbox, order and audit history; ``{"error": ...}`` when the database does not answer."""
    try:
        with wrap_exceptions(), connect(settings.database_url, application_name="conveyor-dlq") as conn:
            return _knowledge(conn, held)
    except DatabaseError as error:
        if not error.operational:
            raise
        return {"error": f"database unreachable: {type(error).__name__}"}


def _knowledge(conn: Connection, held: Held) -> dict:
    message_id, order_id = held.letter.message_id, _uuid(held.letter.order_id)
    return {
        "processed": bool(message_id and Inbox(conn).seen([message_id])),
        "order": views.order(conn, order_id) if order_id else None,
        "audit": AuditLog(conn).history(message_id) if message_id else [],
    }


def pretty_body(body: bytes) -> tuple[str, object | None]:
    """(text to print, parsed JSON or None): indented JSON, else the text, else a note + hex."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(body)} bytes, not UTF-8) {body[:256].hex(' ')}{' ...' if len(body) > 256 else ''}", None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return text, None
    return json.dumps(document, indent=2, ensure_ascii=False), document


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None
