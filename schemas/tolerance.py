"""The tolerant reader and the contract's major version (docs/contracts.md).

Consumed models stay ``extra="forbid"``: tolerance is the parser's choice, made on the JSON
document before validation. ``strip_unknown`` walks the document alongside the model (nested
models, lists of them, optional ones), removes the keys no field declares and names them as
dotted paths (``coupon``, ``items.coupon``, ``customer.shipping_address.floor``), so an
unknown field is never validated, stored or forwarded. Strict mode skips the walk and lets
``extra="forbid"`` refuse, with the same reason as ever.

``schema_version`` (body only; optional, an integer ≥ 1, 1 when absent) names the major
version of the message's family. It is looked at before the model, so a message of a major
this Conveyor does not read is refused as such, not as a list of schema violations.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field

from conveyor.schemas.errors import InvalidMessage

SCHEMA_VERSION_FIELD = "schema_version"
# Major versions of every consumed family this Conveyor reads. During a migration window a
# family reads N and N+1 (the version selects the model); N is retired after a notice.
READ_MAJORS: tuple[int, ...] = (1,)

SchemaVersion = Annotated[int, Field(
    ge=1, description="major version of the message's contract (docs/contracts.md); 1 when absent")]


def check_schema_version(document: Any, model: type[BaseModel], *, message_type: str) -> None:
    """Refuse a message declaring a major version Conveyor does not read. A value that is not
    an integer ≥ 1 (``"2"``, ``0``, ``true``) is left to the model: a schema violation."""
    if SCHEMA_VERSION_FIELD not in model.model_fields or not isinstance(document, dict):
        return
    version = document.get(SCHEMA_VERSION_FIELD)
    if type(version) is int and version >= 1 and version not in READ_MAJORS:
        shown = str(version) if version < 10**9 else f"{str(version)[:9]}…"
        reads = ", ".join(str(major) for major in READ_MAJORS)
        raise InvalidMessage("unsupported_schema_version",
                             f"{message_type} version {shown}, this Conveyor reads {reads}")


def strip_unknown(document: Any, model: type[BaseModel]) -> tuple[Any, tuple[str, ...]]:
    """The document without the keys ``model`` does not declare, at any depth, and their
    dotted paths (list indexes left out, each path once). The document is not modified."""
    found: dict[str, None] = {}
    return _strip(document, model, path="", found=found), tuple(found)


def _strip(value: Any, annotation: Any, *, path: str, found: dict[str, None]) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _strip_object(value, annotation, path=path, found=found) if isinstance(value, dict) else value
    origin = get_origin(annotation)
    if origin is list and isinstance(value, list):
        (item,) = get_args(annotation) or (Any,)
        return [_strip(element, item, path=path, found=found) for element in value]
    if origin is Annotated:
        return _strip(value, get_args(annotation)[0], path=path, found=found)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        # Only an optional (X | None) is unambiguous; a union of shapes is left to the model.
        if len(members) == 1:
            return _strip(value, members[0], path=path, found=found)
    return value


def _strip_object(value: dict[str, Any], model: type[BaseModel], *, path: str,
                  found: dict[str, None]) -> dict[str, Any]:
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    kept: dict[str, Any] = {}
    for key, item in value.items():
        info = fields.get(key)
        if info is None:
            found[f"{path}{key}"] = None
        else:
            kept[key] = _strip(item, info.annotation, path=f"{path}{key}.", found=found)
    return kept
