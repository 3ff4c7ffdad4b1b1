"""Purge: delete chosen dead letters for good.

Without ``--yes`` it is two passes: ``plan_purge`` reads the DLQ (handing everything
back) so the operator can be asked about exactly what was found; ``run_purge`` then
deletes only those copies (by identity, so a message that arrived in between is not
deleted with them). Each deletion is an audit row, then the ack of the held copy: a crash
in between leaves a row for a message still in the DLQ, never a deletion without a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.db.connection import connect
from conveyor.workers.config import Settings
from conveyor.workers.dlq.audit import AuditTrail
from conveyor.workers.dlq.fingerprint import Group, group_letters
from conveyor.workers.dlq.letters import DeadLetter, letter_key
from conveyor.workers.dlq.reader import DlqSession
from conveyor.workers.dlq.selection import Selection


@dataclass
class PurgePlan:
    queue: str
    scanned: int
    letters: list[DeadLetter]
    keys: set[str]
    missing_ids: list[str]

    @property
    def groups(self) -> list[Group]:
        return group_letters(self.letters)


@dataclass
class PurgeReport:
    run_id: str
    queue: str
    operator: str
    scanned: int = 0
    purged: list[str | None] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)


def plan_purge(settings: Settings, dlq: str, selection: Selection) -> PurgePlan:
    letters, keys, seen_ids, scanned = [], set(), set(), 0
    with DlqSession(settings, dlq) as session:
        for held in session.snapshot():
            scanned += 1
            seen_ids.add(held.letter.message_id)
            if selection.matches(held.letter):
                letters.append(held.letter)
                keys.add(letter_key(held.properties, held.body))
    return PurgePlan(dlq, scanned, letters, keys, sorted(selection.message_ids - seen_ids))


def run_purge(settings: Settings, dlq: str, selection: Selection, *, operator: str,
              only_keys: set[str] | None = None) -> PurgeReport:
    """Ack (delete) the selected copies; with ``only_keys``, only copies the operator was shown."""
    with connect(settings.database_url, application_name="conveyor-dlq") as conn, \
            DlqSession(settings, dlq) as session:
        trail = AuditTrail(conn, "purge", dlq, operator, selection.describe())
        trail.start()
        report = PurgeReport(str(trail.run_id), dlq, operator)
        seen_ids: set[str | None] = set()
        try:
            for held in session.snapshot():
                report.scanned += 1
                seen_ids.add(held.letter.message_id)
                if selection.matches(held.letter) and (only_keys is None or
                                                       letter_key(held.properties, held.body) in only_keys):
                    trail.record(held.letter, "purged")   # before the ack: no unrecorded deletion
                    session.ack(held)
                    report.purged.append(held.letter.message_id)
        except BaseException as error:
            trail.finish("failed", matched=len(report.purged), succeeded=len(report.purged), failed=0,
                         detail=f"interrupted: {type(error).__name__}: {error}")
            raise
        report.missing_ids = sorted(selection.message_ids - seen_ids)
        trail.finish("ok", matched=len(report.purged), succeeded=len(report.purged), failed=0)
        return report
