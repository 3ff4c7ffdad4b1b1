"""Field types shared by every message: money as decimal strings, ISO codes, ids, timestamps.

Models are strict (no coercion); the few types that JSON can only carry as strings
(UUID, timestamp, decimal) accept a string and nothing else.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

MONEY_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,4})?$"
_MONEY = re.compile(MONEY_PATTERN)


# Parsed JSON only ever holds str/int/float/bool/None/list/dict, so accepting an
# instance of the target type lets Python code build events without opening a door
# for numbers on the wire.
def _string_or(kind: type) -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, (str, kind)):
            raise ValueError("must be a JSON string")
        return value
    return check


def _money_string(value: Any) -> Any:
    if isinstance(value, Decimal):
        value = format(value, "f")
    if not isinstance(value, str) or not _MONEY.fullmatch(value):
        raise ValueError("money must be a decimal string such as \"12.50\" (at most 4 decimals)")
    return value


def _representable_in_utc(value: datetime) -> datetime:
    # "0001-01-01T00:00:00+14:00" is a valid timestamp, but in UTC it falls before year 1:
    # PostgreSQL stores it, and then every read of the row fails in Python.
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("timestamp is out of range in UTC (years 1 to 9999)") from None
    return value


MESSAGE_CONFIG = ConfigDict(strict=True, extra="forbid", frozen=True)

Money = Annotated[
    Decimal,
    BeforeValidator(_money_string),
    Field(strict=False),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN,
                    "description": "decimal amount as a string, at most 4 decimals"}),
]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
TenantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=False)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]
TaxCategory = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]{1,64}$")]
Quantity = Annotated[int, Field(gt=0, le=1_000_000)]
UuidString = Annotated[UUID, BeforeValidator(_string_or(UUID)), Field(strict=False)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_string_or(datetime)), AfterValidator(_representable_in_utc),
                      Field(strict=False)]

__all__ = [
    "MESSAGE_CONFIG", "Money", "CurrencyCode", "TenantId", "Sku", "ExternalId", "Reason",
    "Quantity", "TaxCategory", "UuidString", "Timestamp", "datetime", "Decimal", "UUID",
]
