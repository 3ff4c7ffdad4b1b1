"""The current JSON Schemas (schemas/json/) make no breaking change to the last release of
their major version (schemas/released/<major>/, the schemas as released; 1 is commit ebeb360).

The rule: a consumed message's schema may only accept more (partners' messages that were valid
stay valid); a published event's schema may only promise more (what partners read stays within
what they were told). So, for every released message:

- breaking, both directions: the message (its schema file) removed; a field removed or renamed;
  a required field added; a field's type changed; a pattern or format changed;
- breaking for a consumed message: a bound narrowed (minLength, maxLength, minimum, maximum,
  exclusiveMinimum/Maximum, minItems, maxItems: raised minimum, lowered maximum, or added); an
  enum value removed; additionalProperties tightened (unknown fields accepted, then refused);
- breaking for a published event: a field no longer required; a bound widened or dropped; an
  enum value added (a reader may switch over every value it was told of); additionalProperties
  loosened;
- allowed: new optional fields (readers of events must ignore fields they do not know), new
  message types, widened bounds and new enum values on consumed messages, narrowed bounds on
  published ones, descriptions and examples, and the patterns that only say what the parser has
  always refused (``export.NO_CONTROL_CHARACTERS``, ``UUID_PATTERN``, ``TIMESTAMP_PATTERN``, the
  ``not`` of ``CONTROL_CHARACTERS``): no message valid before becomes invalid through them.

A breaking change needs a new major version: a new schemas/released/<major>/ and ``schema_version``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conveyor.schemas import export

RELEASED = export.HERE / "released"
CURRENT = export.HERE / export.JSON_DIR
MAJOR = export.CONTRACT_VERSION.split(".")[0]
ALWAYS_REFUSED = {export.NO_CONTROL_CHARACTERS, export.UUID_PATTERN, export.TIMESTAMP_PATTERN}
LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems")
UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def direction(schema: dict) -> str:
    return "consumed" if any(m["direction"] == "consumed" for m in schema["x-conveyor-messages"]) else "published"


def by_type(node: dict, root: dict) -> dict[str, dict]:
    """A schema node as {JSON type: the schema of that type}: anyOf flattened, $ref resolved."""
    if "$ref" in node:
        return by_type(root["$defs"][node["$ref"].split("/")[-1]], root)
    if "anyOf" in node:
        return {kind: branch for sub in node["anyOf"] for kind, branch in by_type(sub, root).items()}
    kinds = node.get("type", "any")
    return {kind: node for kind in ([kinds] if isinstance(kinds, str) else kinds)}


def breaking_changes(old: dict, new: dict, *, consumed: bool) -> list[str]:
    problems: list[str] = []
    _compare(old, new, old_root=old, new_root=new, consumed=consumed, path="$", problems=problems)
    return problems


def _compare(old: dict, new: dict, *, old_root: dict, new_root: dict, consumed: bool, path: str,
             problems: list[str]) -> None:
    old_types, new_types = by_type(old, old_root), by_type(new, new_root)
    if set(old_types) != set(new_types):
        problems.append(f"{path}: type changed from {sorted(old_types)} to {sorted(new_types)}")
    for kind in set(old_types) & set(new_types):
        a, b = old_types[kind], new_types[kind]
        _scalars(a, b, consumed=consumed, path=path, problems=problems)
        if kind == "object":
            _object(a, b, old_root=old_root, new_root=new_root, consumed=consumed, path=path, problems=problems)
        elif kind == "array" and "items" in a:
            _compare(a["items"], b.get("items", {}), old_root=old_root, new_root=new_root, consumed=consumed,
                     path=f"{path}[]", problems=problems)


def _scalars(a: dict, b: dict, *, consumed: bool, path: str, problems: list[str]) -> None:
    for key in ("pattern", "format"):
        if a.get(key) != b.get(key) and not (key == "pattern" and a.get(key) is None and b[key] in ALWAYS_REFUSED):
            problems.append(f"{path}: {key} changed from {a.get(key)!r} to {b.get(key)!r}")
    for key in (*LOWER_BOUNDS, *UPPER_BOUNDS):
        lower = key in LOWER_BOUNDS
        was, now = a.get(key), b.get(key)
        narrowed = now is not None and (was is None or (now > was if lower else now < was))
        widened = was is not None and (now is None or (now < was if lower else now > was))
        if (narrowed and consumed) or (widened and not consumed):
            problems.append(f"{path}: {key} {'narrowed' if narrowed else 'widened'} from {was} to {now}")
    if "enum" in a:
        removed, added = set(a["enum"]) - set(b.get("enum", a["enum"])), set(b.get("enum", ())) - set(a["enum"])
        if consumed and removed:
            problems.append(f"{path}: enum values removed: {sorted(removed)}")
        if not consumed and added:
            problems.append(f"{path}: enum values added to a published event: {sorted(added)}")
    elif "enum" in b and consumed:
        problems.append(f"{path}: enum added")


def _object(a: dict, b: dict, *, old_root: dict, new_root: dict, consumed: bool, path: str,
            problems: list[str]) -> None:
    old_required, new_required = set(a.get("required", ())), set(b.get("required", ()))
    if new_required - old_required:
        problems.append(f"{path}: required fields added: {sorted(new_required - old_required)}")
    if not consumed and old_required - new_required:
        dropped = sorted(old_required - new_required)
        problems.append(f"{path}: fields no longer required in a published event: {dropped}")
    for name, schema in a.get("properties", {}).items():
        if name not in b.get("properties", {}):
            problems.append(f"{path}.{name}: field removed or renamed")
        else:
            _compare(schema, b["properties"][name], old_root=old_root, new_root=new_root, consumed=consumed,
                     path=f"{path}.{name}", problems=problems)
    was, now = a.get("additionalProperties", True), b.get("additionalProperties", True)
    if consumed and was is not False and now is False:
        problems.append(f"{path}: additionalProperties tightened (unknown fields refused)")
    if not consumed and was is False and now is not False:
        problems.append(f"{path}: additionalProperties loosened in a published event")


RELEASED_FILES = sorted((RELEASED / MAJOR).glob("*.schema.json"))


def test_the_release_of_the_current_major_is_kept():
    assert RELEASED_FILES, f"schemas/released/{MAJOR}/ holds no schema"


@pytest.mark.parametrize("released", RELEASED_FILES, ids=[p.name for p in RELEASED_FILES])
def test_the_current_schema_makes_no_breaking_change_to_its_release(released):
    current = CURRENT / released.name
    assert current.exists(), f"{released.name}: a released message is no longer generated"
    old, new = load(released), load(current)

    problems = breaking_changes(old, new, consumed=direction(old) == "consumed")

    assert problems == [], "\n".join([f"{released.name} breaks major {MAJOR}:", *problems])


# --- the checker itself catches each kind of breaking change ---------------------------------------------

def _consumed() -> dict:
    return load(CURRENT / "OrderCreated.schema.json")


def _published() -> dict:
    return load(CURRENT / "OrderRejected.schema.json")


def _changed(schema: dict, change: Any) -> dict:
    changed = copy.deepcopy(schema)
    change(changed)
    return changed


BREAKING = {
    "required field added": (_consumed, lambda s: s["required"].append("customer"), True),
    "field removed": (_consumed, lambda s: s["properties"].pop("customer_id"), True),
    "field renamed": (_published, lambda s: s["properties"].update(client_id=s["properties"].pop("customer_id")),
                      False),
    "type changed": (_published, lambda s: s["properties"]["customer_id"].update(type="integer"), False),
    "bound narrowed (consumed)": (_consumed, lambda s: s["properties"]["items"].update(maxItems=100), True),
    "bound widened (published)": (_published, lambda s: s["properties"]["lines"].pop("minItems"), False),
    "enum value removed (consumed)": (_consumed, lambda s: s["properties"]["schema_version"].update(enum=[]), True),
    "enum value added (published)": (
        _published, lambda s: s["$defs"]["RejectedLine"]["properties"]["reason"]["enum"].append("other"), False),
    "additionalProperties tightened (consumed)": (_consumed, lambda s: s.update(additionalProperties=False), True),
    "no longer required (published)": (_published, lambda s: s["required"].remove("lines"), False),
    "pattern changed": (_consumed, lambda s: s["properties"]["currency"].update(pattern="^[A-Z]{2,3}$"), True),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_the_checker_refuses_a_breaking_change(case):
    make, change, consumed = BREAKING[case]
    schema = make()

    assert breaking_changes(schema, _changed(schema, change), consumed=consumed) != []


ALLOWED = {
    "new optional field": (_published, lambda s: s["properties"].update(note={"type": "string"}), False),
    "bound widened (consumed)": (_consumed, lambda s: s["properties"]["items"].update(maxItems=500), True),
    "bound narrowed (published)": (_published, lambda s: s["properties"]["lines"].update(maxItems=500), False),
    "enum value added (consumed)": (_consumed, lambda s: s["properties"]["schema_version"]["enum"].append(2), True),
    "description changed": (_consumed, lambda s: s.update(description="another text"), True),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_the_checker_allows_a_compatible_change(case):
    make, change, consumed = ALLOWED[case]
    schema = make()

    assert breaking_changes(schema, _changed(schema, change), consumed=consumed) == []
