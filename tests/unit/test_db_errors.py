"""Driver errors translated at the db/ edge: the class each one becomes, outage or not."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors

from conveyor.db.errors import (
    ConnectionFailure,
    DatabaseError,
    DatabaseUnavailable,
    IntegrityViolation,
    TransientDatabaseError,
    is_outage,
    is_transient,
    translate,
    wrap_exceptions,
)


def _driver(code: str | None) -> psycopg.Error:
    return psycopg.OperationalError("lost") if code is None else pg_errors.lookup(code)(f"server said {code}")


@pytest.mark.parametrize(
    ("code", "cls", "transient", "outage"),
    [
        (None, DatabaseUnavailable, True, True),
        ("57P01", DatabaseUnavailable, True, True),
        ("40P01", TransientDatabaseError, True, False),
        ("55P03", TransientDatabaseError, True, False),
        ("08006", ConnectionFailure, False, True),
        ("23505", IntegrityViolation, False, False),
        ("42601", DatabaseError, False, False),
    ],
)
def test_translation_keeps_the_driver_errors_classification(code, cls, transient, outage) -> None:
    # Given a driver error, When it is translated
    raw = _driver(code)
    translated = translate(raw)

    # Then its class, and whether it is transient or an outage, match the raw error's
    assert type(translated) is cls and translated.__cause__ is raw
    assert (is_transient(translated), is_outage(translated)) == (is_transient(raw), is_outage(raw)) == (
        transient, outage)
    assert translated.code == (code or "connection")


def test_wrap_exceptions_translates_and_passes_conveyor_errors_through() -> None:
    with pytest.raises(TransientDatabaseError) as caught, wrap_exceptions():
        raise _driver("40001")
    assert caught.value.operational and not caught.value.connection_broken

    own = IntegrityViolation("mine")
    with pytest.raises(IntegrityViolation) as passed, wrap_exceptions():
        raise own
    assert passed.value is own
