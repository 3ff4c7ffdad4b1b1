"""Export a DLQ to a JSON-lines file and import such a file into a DLQ.

Export reads through a DLQ session (nothing consumed, order kept) and writes the file
atomically (a temporary file renamed at the end), refusing to overwrite unless told.
Import checks the whole file before publishing anything, skips records whose copy is
already in the target DLQ (importing a file twice does not double it), publishes the
rest to the DLQ with confirms, marked ``x-conveyor-imported-at``/``-by``, and audits.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pika.spec import BasicProperties

from conveyor.db.connection import connect
from conveyor.workers.config import Settings
from conveyor.workers.dlq.audit import AuditTrail
from conveyor.workers.dlq.encoding import BadRecord, from_line, to_line
from conveyor.workers.dlq.letters import H_IMPORTED_AT, H_IMPORTED_BY, letter_key, read_letter
from conveyor.workers.dlq.reader import DlqSession, PublishRefused
from conveyor.workers.dlq.selection import Selection


@dataclass(frozen=True)
class Record:
    line_no: int
    queue: str
    properties: BasicProperties
    body: bytes


@dataclass
class ImportReport:
    run_ids: list[str] = field(default_factory=list)
    queues: dict[str, dict] = field(default_factory=dict)  # per DLQ: imported / already present
    stopped: str | None = None

    @property
    def imported(self) -> int:
        return sum(q["imported"] for q in self.queues.values())

    @property
    def skipped(self) -> int:
        return sum(q["already_present"] for q in self.queues.values())


# -- export ----------------------------------------------------------------------------------

def export(settings: Settings, dlq: str, path: Path, *, selection: Selection | None = None,
           overwrite: bool = False) -> int:
    """Write the DLQ's (selected) messages to ``path``; returns how many were written."""
    selection = selection or Selection()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another file or pass --force")
    written = 0
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent or ".",
                                         prefix=f".{path.name}.", delete=False)
    try:
        with handle, DlqSession(settings, dlq) as session:
            for held in session.snapshot():
                if selection.matches(held.letter):
                    handle.write(to_line(held.properties, held.body, queue=dlq, position=held.letter.position))
                    handle.write("\n")
                    written += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return written


# -- import ----------------------------------------------------------------------------------

def read_export(path: Path) -> list[Record]:
    """Every record of the file, or ``ValueError`` naming the first bad line (nothing is imported)."""
    records = []
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                queue, properties, body = from_line(line)
            except BadRecord as error:
                raise ValueError(f"{path}:{line_no}: {error}") from None
            records.append(Record(line_no, queue, properties, body))
    return records


def run_import(settings: Settings, records: list[Record], *, operator: str, source: str,
               into: str | None = None) -> ImportReport:
    """Publish the records into their DLQ (or ``into``), one audited run per DLQ."""
    report = ImportReport()
    by_queue: dict[str, list[Record]] = {}
    for record in records:
        by_queue.setdefault(into or record.queue, []).append(record)
    with connect(settings.database_url, application_name="conveyor-dlq") as conn:
        for dlq, batch in by_queue.items():
            _import_into(settings, conn, dlq, batch, operator=operator, source=source, report=report)
            if report.stopped:
                break
    return report


def _import_into(settings: Settings, conn, dlq: str, batch: list[Record], *, operator: str, source: str,
                 report: ImportReport) -> None:
    counts = report.queues.setdefault(dlq, {"imported": 0, "already_present": 0})
    with DlqSession(settings, dlq) as session:
        present = {letter_key(held.properties, held.body) for held in session.snapshot()}
        trail = AuditTrail(conn, "import", dlq, operator, {"file": source, "records": len(batch)})
        trail.start()
        report.run_ids.append(str(trail.run_id))
        try:
            for record in batch:
                _import_one(session, trail, record, present=present, counts=counts)
        except PublishRefused as error:
            report.stopped = f"{dlq}: {error}"
        except BaseException as error:
            _finish(trail, counts, len(batch), f"interrupted: {type(error).__name__}: {error}")
            raise
        _finish(trail, counts, len(batch), report.stopped)


def _import_one(session: DlqSession, trail: AuditTrail, record: Record, *, present: set[str],
                counts: dict) -> None:
    letter = read_letter(record.properties, record.body, position=-1)
    key = letter_key(record.properties, record.body)
    if key in present:
        counts["already_present"] += 1
        trail.record(letter, "skipped", target=f"queue {session.dlq} (already present)")
        return
    session.publish("", session.dlq, record.body, imported_properties(record.properties, operator=trail.operator))
    present.add(key)
    counts["imported"] += 1
    trail.record(letter, "imported", target=f"queue {session.dlq}")


def imported_properties(properties: BasicProperties, *, operator: str,
                        now: datetime | None = None) -> BasicProperties:
    headers = dict(properties.headers or {})
    headers[H_IMPORTED_AT] = (now or datetime.now(timezone.utc)).isoformat()
    headers[H_IMPORTED_BY] = operator
    values = {name: getattr(properties, name) for name in (
        "content_type", "content_encoding", "priority", "correlation_id", "reply_to", "expiration",
        "message_id", "timestamp", "type", "app_id", "cluster_id")}
    # user_id is dropped: the broker refuses a user_id other than the publishing user.
    return BasicProperties(**values, headers=headers, delivery_mode=2)


def _finish(trail: AuditTrail, counts: dict, total: int, stopped: str | None) -> None:
    trail.finish("failed" if stopped else "ok", matched=total, succeeded=counts["imported"],
                 failed=total - counts["imported"] - counts["already_present"], detail=stopped)
