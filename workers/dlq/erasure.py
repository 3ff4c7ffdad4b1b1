"""Erasing a customer from the dead letters (``conveyor gdpr erase``): every DLQ copy that
names the customer is replaced by a redacted copy (no ``customer`` object, the erased id in
place of theirs, headers that quote them scrubbed) published to the same DLQ with the
publisher confirm, and only then acked. The redacted copy goes to the tail of the queue; a
replay of it still works (the order's facts are intact), without the personal data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pika.spec import BasicProperties

from conveyor.workers.config import Settings
from conveyor.workers.dlq.reader import DlqNotFound, DlqSession, Held

SCRUBBED = "[erased]"


@dataclass(frozen=True)
class Subject:
    tenant_id: str
    customer_id: str
    erased_id: str
    default_tenant: str
    emails: frozenset[str] = frozenset()

    def named_in(self, body: bytes) -> bool:
        document = _object(body)
        if document is not None:
            tenant = document.get("tenant_id") or self.default_tenant
            if tenant == self.tenant_id and document.get("customer_id") == self.customer_id:
                return True
        return any(email.encode() in body for email in self.emails)


@dataclass
class ErasureReport:
    scanned: dict[str, int] = field(default_factory=dict)
    redacted: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def erase_from_dlqs(settings: Settings, dlqs: list[str], subject: Subject) -> ErasureReport:
    report = ErasureReport()
    for dlq in dlqs:
        try:
            with DlqSession(settings, dlq) as session:
                report.scanned[dlq], report.redacted[dlq] = _erase_in(session, dlq, subject)
        except DlqNotFound:
            report.missing.append(dlq)
    return report


def _erase_in(session: DlqSession, dlq: str, subject: Subject) -> tuple[int, int]:
    scanned = redacted = 0
    for held in session.snapshot():
        scanned += 1
        if subject.named_in(held.body):
            session.publish("", dlq, redact_body(held.body, subject), _scrubbed(held, subject))
            session.ack(held)  # after the confirm of its redacted copy
            redacted += 1
    return scanned, redacted


def redact_body(body: bytes, subject: Subject) -> bytes:
    document = _object(body)
    if document is None:
        for secret in (*subject.emails, subject.customer_id):
            body = body.replace(secret.encode(), SCRUBBED.encode())
        return body
    document.pop("customer", None)
    if document.get("customer_id") == subject.customer_id:
        document["customer_id"] = subject.erased_id
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _scrubbed(held: Held, subject: Subject) -> BasicProperties:
    properties = held.properties
    headers = {key: _scrub(value, subject) for key, value in (properties.headers or {}).items()}
    values = {name: getattr(properties, name) for name in (
        "content_type", "content_encoding", "priority", "correlation_id", "reply_to", "expiration",
        "message_id", "timestamp", "type", "app_id", "cluster_id")}
    return BasicProperties(**values, headers=headers, delivery_mode=2)


def _scrub(value: object, subject: Subject) -> object:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        for secret in (*subject.emails, subject.customer_id):
            value = value.replace(secret, SCRUBBED)
    return value


def _object(body: bytes) -> dict | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None
