"""The DLQ console's audit trail: runs (replay, purge, import) and the messages each changed.

Named, parameterised statements over ``dlq_audit_runs`` / ``dlq_audit_messages``
(migration V004); driver errors leave as Conveyor's ``conveyor.db.errors`` family.
"""

from __future__ import annotations

from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from conveyor.db.errors import wrap_exceptions

START_RUN = """
INSERT INTO dlq_audit_runs (run_id, action, operator, queue, selection)
VALUES (%(run_id)s, %(action)s, %(operator)s, %(queue)s, %(selection)s)
"""
RECORD_MESSAGE = """
INSERT INTO dlq_audit_messages (run_id, seq, message_id, outcome, target, fingerprint)
VALUES (%(run_id)s, %(seq)s, %(message_id)s, %(outcome)s, %(target)s, %(fingerprint)s)
"""
FINISH_RUN = """
UPDATE dlq_audit_runs
SET finished_at = now(), outcome = %(outcome)s, matched = %(matched)s, succeeded = %(succeeded)s,
    failed = %(failed)s, detail = %(detail)s
WHERE run_id = %(run_id)s AND outcome = 'running'
"""
RUN_COLUMNS = ("run_id", "action", "operator", "queue", "selection", "started_at", "finished_at",
               "outcome", "matched", "succeeded", "failed", "detail")
LIST_RUNS = f"""
SELECT {", ".join(RUN_COLUMNS)} FROM dlq_audit_runs
WHERE (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY started_at DESC, run_id
LIMIT %(limit)s
"""
ONE_RUN = f"SELECT {', '.join(RUN_COLUMNS)} FROM dlq_audit_runs WHERE run_id = %(run_id)s"
MESSAGE_COLUMNS = ("seq", "message_id", "outcome", "target", "fingerprint", "recorded_at")
RUN_MESSAGES = f"""
SELECT {", ".join(MESSAGE_COLUMNS)} FROM dlq_audit_messages WHERE run_id = %(run_id)s ORDER BY seq
"""
HISTORY_COLUMNS = ("run_id", "action", "operator", "outcome", "target", "recorded_at")
MESSAGE_HISTORY = """
SELECT r.run_id, r.action, r.operator, m.outcome, m.target, m.recorded_at
FROM dlq_audit_messages m JOIN dlq_audit_runs r USING (run_id)
WHERE m.message_id = %(message_id)s
ORDER BY m.recorded_at, m.seq
"""


class AuditLog:
    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def start_run(self, run_id: UUID, *, action: str, operator: str, queue: str, selection: dict) -> None:
        self._execute(START_RUN, {"run_id": run_id, "action": action, "operator": operator,
                                  "queue": queue, "selection": Jsonb(selection)})

    def record_message(self, run_id: UUID, seq: int, *, message_id: str | None, outcome: str,
                       target: str | None = None, fingerprint: str | None = None) -> None:
        self._execute(RECORD_MESSAGE, {"run_id": run_id, "seq": seq, "message_id": message_id,
                                       "outcome": outcome, "target": target, "fingerprint": fingerprint})

    def finish_run(self, run_id: UUID, *, outcome: str, matched: int, succeeded: int, failed: int,
                   detail: str | None = None) -> None:
        self._execute(FINISH_RUN, {"outcome": outcome, "matched": matched, "succeeded": succeeded,
                                   "failed": failed, "detail": detail, "run_id": run_id})

    def runs(self, *, action: str | None = None, queue: str | None = None, limit: int = 50) -> list[dict]:
        rows = self._execute(LIST_RUNS, {"action": action, "queue": queue, "limit": limit}).fetchall()
        return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in rows]

    def run(self, run_id: UUID) -> dict | None:
        row = self._execute(ONE_RUN, {"run_id": run_id}).fetchone()
        return dict(zip(RUN_COLUMNS, row, strict=True)) if row else None

    def messages(self, run_id: UUID) -> list[dict]:
        return [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in self._execute(RUN_MESSAGES, {"run_id": run_id})]

    def history(self, message_id: str) -> list[dict]:
        """Every replay, purge or import that touched this message id, oldest first."""
        rows = self._execute(MESSAGE_HISTORY, {"message_id": message_id})
        return [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in rows]

    def _execute(self, query: str, params: dict[str, object]) -> psycopg.Cursor:
        with wrap_exceptions(self._conn):  # a lost connection: DatabaseUnavailable ("unreachable")
            return self._conn.execute(query, params)
