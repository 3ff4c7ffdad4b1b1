"""Bytes to a validated pydantic model, refusing what JSON parsers usually let through.

Order of checks: size, UTF-8, JSON (no duplicate keys, no NaN/Infinity, no floats —
money travels as strings), control characters in strings, the contract's major version,
then (tolerant reading only) unknown fields are dropped, then the strict model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from conveyor.schemas.errors import InvalidMessage
from conveyor.schemas.tolerance import check_schema_version, strip_unknown

Model = TypeVar("Model", bound=BaseModel)

# C0 controls except tab/newline/carriage return, DEL and C1 controls; NUL also breaks PostgreSQL text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Reading(Generic[Model]):
    message: Model
    # Dotted paths of the fields a tolerant reading dropped (``items.coupon``); never values.
    unknown_fields: tuple[str, ...] = ()


def parse_message(body: bytes, model: type[Model], *, max_bytes: int) -> Model:
    """Strict: an unknown field is refused (``extra="forbid"``). For published contracts and
    strict mode; a consumer reads its deliveries with ``read_message``."""
    return read_message(body, model, max_bytes=max_bytes, tolerant=False).message


def read_message(body: bytes, model: type[Model], *, max_bytes: int, tolerant: bool,
                 message_type: str | None = None) -> Reading[Model]:
    """``tolerant``: unknown fields, at any depth, are dropped and named instead of refused;
    everything else is refused in both modes. ``message_type`` names the family in reasons."""
    document = load_json(body, max_bytes=max_bytes)
    if _control_characters_possible(body):
        _refuse_control_characters(document, path="$")
    check_schema_version(document, model, message_type=message_type or model.__name__)
    unknown: tuple[str, ...] = ()
    if tolerant:
        document, unknown = strip_unknown(document, model)
    try:
        return Reading(model.model_validate(document), unknown)
    except ValidationError as exc:
        raise InvalidMessage("schema_violation", _summarise(exc)) from None


def load_json(body: bytes, *, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise InvalidMessage("too_large", f"body is {len(body)} bytes, limit is {max_bytes}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage("bad_encoding", f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
            parse_float=_no_floats,
        )
    except InvalidMessage:
        raise
    # ValueError besides JSONDecodeError: an integer of more than 4300 digits (Python's
    # int-conversion limit) is valid JSON, but no field can hold it.
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage("not_json", str(exc)[:200]) from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise InvalidMessage("duplicate_key", f"key {key!r} appears more than once")
        document[key] = value
    return document


def _no_constants(name: str) -> Any:
    raise InvalidMessage("not_json", f"{name} is not valid JSON")


def _no_floats(text: str) -> Any:
    raise InvalidMessage("float_number", f"number {text[:40]} has a fraction; send money as a string")


def _control_characters_possible(body: bytes) -> bool:
    """Whether a string of the (valid UTF-8 JSON) body may hold a control character. Without
    a backslash, every string is in the text as it is, so one search of the text is exact;
    with escapes, the walk over the parsed document decides. Most bodies take the first way,
    which costs one regex search instead of a Python call per value."""
    return b"\\" in body or _CONTROL.search(body.decode("utf-8")) is not None


def _refuse_control_characters(value: Any, *, path: str) -> None:
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise InvalidMessage("control_character", f"{path} contains a control character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_control_characters(key, path=f"{path} key")
            _refuse_control_characters(item, path=f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_control_characters(item, path=f"{path}[{index}]")


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "$"
        parts.append(f"{location}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
