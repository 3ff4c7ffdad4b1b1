"""Failures grouped by cause, so one bad deploy shows as one group, not 10,000 rows.

Pure. A fingerprint is a short hash of the error class, the place it was raised (the
innermost traceback frame without its line number, so a redeploy that shifts lines keeps
the group) and the error message with its variable parts replaced by placeholders
(ids, numbers, quoted values, timestamps).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from conveyor.workers.dlq.letters import DeadLetter

FINGERPRINT_LENGTH = 12
MESSAGE_KEEP = 200

# Order matters: whole timestamps and ids before the numbers inside them.
_PLACEHOLDERS = (
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""), "<str>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
)
_SPACES = re.compile(r"\s+")
_LINE_NUMBER = re.compile(r":\d+\b")


@dataclass(frozen=True)
class Group:
    fingerprint: str
    error_class: str
    where: str
    message: str               # the normalised message shared by the group
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    routing_keys: tuple[str, ...]


def normalise_message(message: str) -> str:
    text = message
    for pattern, placeholder in _PLACEHOLDERS:
        text = pattern.sub(placeholder, text)
    return _SPACES.sub(" ", text).strip()[:MESSAGE_KEEP]


def normalise_where(where: str) -> str:
    """``"parsing.py:43 load_json"`` → ``"parsing.py load_json"``."""
    return _LINE_NUMBER.sub("", where).strip()


def fingerprint(letter: DeadLetter) -> str:
    parts = (letter.error_class, normalise_where(letter.where), normalise_message(letter.error_message))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:FINGERPRINT_LENGTH]


def group_letters(letters: Iterable[DeadLetter]) -> list[Group]:
    """Groups, largest first (then by fingerprint, so the output is stable)."""
    members: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        members.setdefault(fingerprint(letter), []).append(letter)
    groups = [_group(fp, found) for fp, found in members.items()]
    return sorted(groups, key=lambda g: (-g.count, g.fingerprint))


def _group(fp: str, letters: list[DeadLetter]) -> Group:
    stamps = [letter.failed_at for letter in letters if letter.failed_at is not None]
    first = letters[0]
    return Group(
        fingerprint=fp, error_class=first.error_class, where=normalise_where(first.where),
        message=normalise_message(first.error_message), count=len(letters),
        first_seen=min(stamps, default=None), last_seen=max(stamps, default=None),
        routing_keys=tuple(sorted({letter.routing_key or "?" for letter in letters})),
    )


def matches_fingerprint(letter: DeadLetter, wanted: str) -> bool:
    """A group is named by its fingerprint or any prefix of at least 6 characters."""
    return len(wanted) >= 6 and fingerprint(letter).startswith(wanted.lower())
