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
    dotted paths (list indexes left out, each path once). The document is not modified; when
    nothing is unknown it is returned as it is (the common case costs a walk, no copy)."""
    found: dict[str, None] = {}
    return _strip(document, _shape_of(model), path="", found=found), tuple(found)


# A model's shape, worked out once per model: an object maps each key it declares to the shape
# of its value (None: nothing to walk below it); a list names the shape of its items.
Shape = tuple[str, Any]
_shapes: dict[Any, Shape | None] = {}


def _shape_of(annotation: Any) -> Shape | None:
    if annotation not in _shapes:
        _shapes[annotation] = None  # a model that refers to itself stops here
        _shapes[annotation] = _compile(annotation)
    return _shapes[annotation]


def _compile(annotation: Any) -> Shape | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("object", {(info.alias or name): _shape_of(info.annotation)
                           for name, info in annotation.model_fields.items()})
    origin = get_origin(annotation)
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        inner = _shape_of(item)
        return ("list", inner) if inner is not None else None
    if origin is Annotated:
        return _shape_of(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        # Only an optional (X | None) is unambiguous; a union of shapes is left to the model.
        return _shape_of(members[0]) if len(members) == 1 else None
    return None


def _strip(value: Any, shape: Shape | None, *, path: str, found: dict[str, None]) -> Any:
    if shape is None:
        return value
    kind, inner = shape
    if kind == "list":
        if not isinstance(value, list):
            return value
        items = [_strip(element, inner, path=path, found=found) for element in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    changed = False
    for key, item in value.items():
        if key not in inner:
            found[f"{path}{key}"] = None
            changed = True
            continue
        stripped = _strip(item, inner[key], path=f"{path}{key}.", found=found) if inner[key] else item
        changed = changed or stripped is not item
        kept[key] = stripped
    return kept if changed else value
