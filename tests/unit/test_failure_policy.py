"""The failure policy: which errors are retried, with which delay, and when a delivery is dead-lettered."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

from conveyor.db.errors import IntegrityViolation, TransientDatabaseError, translate
from conveyor.schemas.errors import InvalidMessage
from conveyor.workers.runtime.failure import (
    Action,
    ErrorKind,
    PermanentError,
    RetryableError,
    RetryPolicy,
    classify,
    decide,
    error_code,
)

POLICY = RetryPolicy(max_attempts=5, delays=(1, 5, 30))


def _sqlstate_error(code: str) -> psycopg.Error:
    return pg_errors.lookup(code)(f"server said {code}")


# --- classify ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(InvalidMessage("not_json", "nope"), ErrorKind.INVALID, id="invalid-message"),
        pytest.param(PermanentError("payment does not match"), ErrorKind.PERMANENT, id="permanent-error"),
        pytest.param(IntegrityViolation("23505: duplicate"), ErrorKind.PERMANENT, id="integrity-violation"),
        pytest.param(RetryableError("order not seen yet"), ErrorKind.TRANSIENT, id="retryable-error"),
        pytest.param(TransientDatabaseError("40P01: deadlock"), ErrorKind.TRANSIENT, id="transient-db-error"),
        pytest.param(_sqlstate_error("40P01"), ErrorKind.TRANSIENT, id="deadlock-40P01"),
        pytest.param(_sqlstate_error("40001"), ErrorKind.TRANSIENT, id="serialization-40001"),
        pytest.param(_sqlstate_error("55P03"), ErrorKind.TRANSIENT, id="lock-not-available-55P03"),
        pytest.param(_sqlstate_error("57014"), ErrorKind.TRANSIENT, id="query-canceled-57014"),
        pytest.param(psycopg.OperationalError("connection refused"), ErrorKind.TRANSIENT,
                     id="operational-error-without-sqlstate"),
        pytest.param(_sqlstate_error("42P01"), ErrorKind.UNEXPECTED, id="undefined-table-42P01"),
        pytest.param(KeyError("surprise"), ErrorKind.UNEXPECTED, id="plain-bug"),
        pytest.param(RuntimeError("surprise"), ErrorKind.UNEXPECTED, id="runtime-error"),
    ],
)
def test_classify_sorts_errors_into_kinds(error: BaseException, expected: ErrorKind) -> None:
    # Given an error raised while handling a delivery
    # When it is classified
    kind = classify(error)

    # Then it falls into the expected kind
    assert kind is expected


def test_psycopg_errors_built_from_sqlstate_carry_that_sqlstate() -> None:
    # Given errors constructed the way the server's SQLSTATE would select them
    # Then each carries its SQLSTATE (the premise of the transient table above)
    for code in ("40P01", "40001", "55P03"):
        assert _sqlstate_error(code).sqlstate == code
    assert psycopg.OperationalError("lost").sqlstate is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [("40P01", ErrorKind.TRANSIENT), ("23505", ErrorKind.PERMANENT), ("42601", ErrorKind.UNEXPECTED)],
)
def test_translated_driver_errors_keep_their_kind(code: str, expected: ErrorKind) -> None:
    # Given a driver error translated at the db/ edge
    translated = translate(_sqlstate_error(code))

    # When it is classified
    # Then deadlocks retry, constraint violations are permanent, other errors are unexpected
    assert classify(translated) is expected


# --- decide -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "attempts", "policy", "action", "delay"),
    [
        # invalid and permanent: dead-letter at once, whatever the attempt
        (ErrorKind.INVALID, 1, POLICY, Action.DEAD_LETTER, None),
        (ErrorKind.INVALID, 3, POLICY, Action.DEAD_LETTER, None),
        (ErrorKind.PERMANENT, 1, POLICY, Action.DEAD_LETTER, None),
        (ErrorKind.PERMANENT, 4, POLICY, Action.DEAD_LETTER, None),
        # transient: first failure uses delays[0], later ones grow, capped at the last tier
        (ErrorKind.TRANSIENT, 1, POLICY, Action.RETRY_LATER, 1),
        (ErrorKind.TRANSIENT, 2, POLICY, Action.RETRY_LATER, 5),
        (ErrorKind.TRANSIENT, 3, POLICY, Action.RETRY_LATER, 30),
        (ErrorKind.TRANSIENT, 4, POLICY, Action.RETRY_LATER, 30),
        (ErrorKind.TRANSIENT, 5, POLICY, Action.DEAD_LETTER, None),
        (ErrorKind.TRANSIENT, 6, POLICY, Action.DEAD_LETTER, None),
        # unexpected: treated like transient, bounded by the same attempt count
        (ErrorKind.UNEXPECTED, 1, POLICY, Action.RETRY_LATER, 1),
        (ErrorKind.UNEXPECTED, 2, POLICY, Action.RETRY_LATER, 5),
        (ErrorKind.UNEXPECTED, 4, POLICY, Action.RETRY_LATER, 30),
        (ErrorKind.UNEXPECTED, 5, POLICY, Action.DEAD_LETTER, None),
        # a single tier is used for every retry
        (ErrorKind.TRANSIENT, 1, RetryPolicy(3, (7,)), Action.RETRY_LATER, 7),
        (ErrorKind.TRANSIENT, 2, RetryPolicy(3, (7,)), Action.RETRY_LATER, 7),
        (ErrorKind.TRANSIENT, 3, RetryPolicy(3, (7,)), Action.DEAD_LETTER, None),
        # one attempt allowed: the first failure is the last
        (ErrorKind.TRANSIENT, 1, RetryPolicy(1, (1, 5)), Action.DEAD_LETTER, None),
        (ErrorKind.UNEXPECTED, 1, RetryPolicy(1, (1, 5)), Action.DEAD_LETTER, None),
    ],
)
def test_decide_retries_with_growing_delays_until_max_attempts(
    kind: ErrorKind, attempts: int, policy: RetryPolicy, action: Action, delay: int | None,
) -> None:
    # Given a failure of some kind on attempt `attempts`
    # When the policy decides
    decision = decide(kind, attempts=attempts, policy=policy)

    # Then the action and the delay match the table
    assert decision.action is action
    assert decision.delay_seconds == delay
    assert decision.reason.startswith(kind.value)


def test_every_retry_delay_comes_from_the_configured_tiers() -> None:
    # Given the default-shaped policy
    # When every attempt before the last one fails transiently
    delays = [decide(ErrorKind.TRANSIENT, attempts=n, policy=POLICY).delay_seconds
              for n in range(1, POLICY.max_attempts)]

    # Then the delays never shrink and never leave the configured tiers
    assert delays == sorted(delays)
    assert set(delays) <= set(POLICY.delays)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidMessage("duplicate_key", "x"), "duplicate_key"),
        (PermanentError("x"), "permanent"),
        (RetryableError("x"), "retryable"),
        (ValueError("x"), "ValueError"),
    ],
)
def test_error_code_prefers_the_error_code_then_the_class_name(error: BaseException, code: str) -> None:
    assert error_code(error) == code
