"""Text and JSON shapes of the console's output: tables, times, letters, groups. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timezone

from conveyor.workers.dlq.fingerprint import Group, fingerprint
from conveyor.workers.dlq.letters import DeadLetter

LETTER_HEADERS = ("MESSAGE ID", "ORDER ID", "ROUTING KEY", "ERROR CLASS", "REASON", "ATTEMPTS", "FAILED AT")
GROUP_HEADERS = ("FINGERPRINT", "COUNT", "FIRST SEEN", "LAST SEEN", "ERROR CLASS", "WHERE", "MESSAGE")


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def shorten(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def letter_row(letter: DeadLetter) -> list[str]:
    return [shorten(letter.message_id or "(none)", 40), letter.order_id or "-", letter.routing_key or "-",
            letter.error_class, shorten(letter.error_message or letter.reason, 60), str(letter.attempts),
            fmt_time(letter.failed_at)]


def group_row(group: Group) -> list[str]:
    return [group.fingerprint, str(group.count), fmt_time(group.first_seen), fmt_time(group.last_seen),
            group.error_class, shorten(group.where, 32) or "-", shorten(group.message, 60)]


def letter_json(letter: DeadLetter) -> dict:
    return jsonable_dict({**dataclasses.asdict(letter), "fingerprint": fingerprint(letter)})


def group_json(group: Group) -> dict:
    return jsonable_dict(dataclasses.asdict(group))


def jsonable_dict(value: dict) -> dict:
    return {str(k): jsonable(v) for k, v in value.items()}


def jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value
