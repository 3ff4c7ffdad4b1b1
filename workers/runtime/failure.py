"""What to do with a failed delivery: one pure decision, unit-tested with a table of cases.

- invalid input or a broken invariant → dead-letter now, no retry;
- transient trouble (database unreachable, deadlock, lock timeout) → retry later with a
  growing delay, then dead-letter after the configured attempts;
- anything unexpected → treated like transient, bounded by the same attempt count.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from conveyor.db.errors import is_integrity_violation, is_transient
from conveyor.schemas.errors import InvalidMessage


class ErrorKind(enum.Enum):
    INVALID = "invalid"
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    UNEXPECTED = "unexpected"


class Action(enum.Enum):
    RETRY_LATER = "retry"
    DEAD_LETTER = "dead_letter"


class PermanentError(Exception):
    """A business rule refuses the message for good (e.g. a payment that does not match)."""

    code = "permanent"


class RetryableError(Exception):
    """The message may succeed later (e.g. it refers to an order not seen yet)."""

    code = "retryable"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delays: tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_seconds: int | None
    reason: str


def classify(error: BaseException) -> ErrorKind:
    if isinstance(error, InvalidMessage):
        return ErrorKind.INVALID
    if isinstance(error, PermanentError) or is_integrity_violation(error):
        return ErrorKind.PERMANENT
    if isinstance(error, RetryableError) or is_transient(error):
        return ErrorKind.TRANSIENT
    return ErrorKind.UNEXPECTED


def decide(kind: ErrorKind, *, attempts: int, policy: RetryPolicy) -> Decision:
    """``attempts`` counts this failed attempt too (the first failure is attempt 1)."""
    if kind in (ErrorKind.INVALID, ErrorKind.PERMANENT):
        return Decision(Action.DEAD_LETTER, None, f"{kind.value}: not retried")
    if attempts >= policy.max_attempts:
        return Decision(Action.DEAD_LETTER, None,
                        f"{kind.value}: gave up after {attempts} attempts")
    delay = policy.delays[min(attempts - 1, len(policy.delays) - 1)]
    return Decision(Action.RETRY_LATER, delay, f"{kind.value}: attempt {attempts}, retry in {delay}s")


def error_code(error: BaseException) -> str:
    return getattr(error, "code", None) or type(error).__name__
