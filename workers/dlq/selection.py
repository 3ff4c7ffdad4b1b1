"""Which dead letters a command acts on: a target (ids, a group, all, an age) and filters.

Pure, including the parsing of the times and durations the command line accepts:
``--since 2h`` (two hours ago), ``--since 2026-11-25T10:00:00Z``, ``--older-than 7d``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from conveyor.workers.dlq.fingerprint import matches_fingerprint
from conveyor.workers.dlq.letters import DeadLetter

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True)
class Selection:
    message_ids: frozenset[str] = field(default_factory=frozenset)
    group: str | None = None
    everything: bool = False
    older_than: datetime | None = None     # failed before this instant
    reason: str | None = None              # substring of the reason, code or error message
    error_class: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    routing_key: str | None = None

    @property
    def targeted(self) -> bool:
        """True when the selection names what to act on (state-changing commands need it)."""
        return bool(self.message_ids or self.group or self.everything or self.older_than)

    def matches(self, letter: DeadLetter) -> bool:
        return self._in_target(letter) and self._passes_filters(letter)

    def _in_target(self, letter: DeadLetter) -> bool:
        if self.message_ids and letter.message_id not in self.message_ids:
            return False
        if self.group and not matches_fingerprint(letter, self.group):
            return False
        if self.older_than and not (letter.failed_at and letter.failed_at < self.older_than):
            return False
        return True

    def _passes_filters(self, letter: DeadLetter) -> bool:
        if self.reason and not _contains(self.reason, letter.reason, letter.error_code, letter.error_message):
            return False
        if self.error_class and letter.error_class.lower() != self.error_class.lower():
            return False
        if self.routing_key and letter.routing_key != self.routing_key:
            return False
        failed_at = letter.failed_at
        if failed_at is None:
            return not (self.since or self.until)
        if self.since and failed_at < self.since:
            return False
        return not (self.until and failed_at > self.until)

    def describe(self) -> dict:
        """What was asked for, for the audit trail and --json output."""
        described = {
            "message_ids": sorted(self.message_ids), "group": self.group, "all": self.everything,
            "older_than": self.older_than, "reason": self.reason, "error_class": self.error_class,
            "since": self.since, "until": self.until, "routing_key": self.routing_key,
        }
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in described.items() if v not in (None, False, [])}


def _contains(needle: str, *haystacks: str) -> bool:
    wanted = needle.lower()
    return any(wanted in (text or "").lower() for text in haystacks)


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``, or combined like ``"1h30m"``."""
    cleaned = text.strip().lower()
    if not cleaned or _DURATION.sub("", cleaned):
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 15m, 2h, 7d, 1h30m")
    return timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(cleaned)))


def parse_time(text: str, *, now: datetime) -> datetime:
    """An ISO-8601 date or time (UTC when no zone is given), or a duration meaning "that long ago"."""
    cleaned = text.strip()
    if re.fullmatch(r"(\d+[smhdw])+", cleaned.lower()):
        return now - parse_duration(cleaned)
    try:
        stamp = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use ISO-8601 (2026-11-25T10:00:00Z) "
                         "or an age like 2h, 3d") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
