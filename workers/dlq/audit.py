"""Who did what to a DLQ: the operator's name and one audit run per state-changing command.

A run is written before the command changes anything (so a killed run still shows who
started it and what it asked for), one row follows each confirmed change, and the run
is closed with its counts and outcome. Persistence is ``conveyor.db.audit``.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.db.audit import AuditLog
from conveyor.db.connection import Connection
from conveyor.workers.dlq.fingerprint import fingerprint
from conveyor.workers.dlq.letters import DeadLetter

OPERATOR_VARIABLE = "CONVEYOR_OPERATOR"
OPERATOR_MAX = 128


def current_operator(environ: Mapping[str, str] = os.environ) -> str:
    """``CONVEYOR_OPERATOR`` when set, else the OS user; printable characters only."""
    name = environ.get(OPERATOR_VARIABLE, "").strip() or _os_user()
    cleaned = "".join(c for c in name if c.isprintable()).strip()[:OPERATOR_MAX]
    return cleaned or "unknown"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (containers): still audit, as "unknown"
        return ""


def storable(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; dead letters with odd message ids must still be recorded."""
    return text.replace("\x00", "\\x00") if text is not None else None


@dataclass
class AuditTrail:
    conn: Connection
    action: str
    queue: str
    operator: str
    selection: dict
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    _seq: int = 0

    def start(self) -> None:
        AuditLog(self.conn).start_run(self.run_id, action=self.action, operator=self.operator,
                                      queue=self.queue, selection=self.selection)

    def record(self, letter: DeadLetter, outcome: str, *, target: str | None = None) -> None:
        self._seq += 1
        AuditLog(self.conn).record_message(self.run_id, self._seq, message_id=storable(letter.message_id),
                                           outcome=outcome, target=target, fingerprint=fingerprint(letter))

    def finish(self, outcome: str, *, matched: int, succeeded: int, failed: int, detail: str | None = None) -> None:
        AuditLog(self.conn).finish_run(self.run_id, outcome=outcome, matched=matched, succeeded=succeeded,
                                       failed=failed, detail=storable(detail[:1000] if detail else None))
