"""Contract documents generated from the message registry (``conveyor.schemas.registry``): a JSON
Schema per model in ``schemas/json/`` and ``schemas/asyncapi.yaml`` (AsyncAPI 3.0:
exchanges, routing keys, payloads). They are generated, never edited by hand:

    python -m conveyor.schemas.export           # (re)write them
    python -m conveyor.schemas.export --check   # exit 1 and list what differs from the models

``tests/unit/test_schema_contract.py`` fails when the committed files drift from the models.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from conveyor.schemas.registry import MESSAGES, MessageSpec

HERE = Path(__file__).resolve().parent
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CONTRACT_VERSION = "1.0.0"
GENERATED = "Generated from schemas/registry.py by `python -m conveyor.schemas.export`; do not edit."
AMQP_BINDING_VERSION = "0.3.0"
ROUTING_KEY_PARAMETERS = {
    "tenant": "The tenant id as one routing-key word: letters, digits, '_' and '-' as they are, "
              "any other character as %XX per UTF-8 byte (schemas/inventory.py: routing_word).",
    "sku": "The SKU as one routing-key word, encoded like the tenant (a dot is %2E, a space %20); "
           "when the whole key would pass 255 bytes, '=' and 32 hex digits of the SKU's SHA-256.",
}
INFO = """\
What Conveyor consumes and publishes on RabbitMQ. Every exchange is a durable topic exchange; \
messages are JSON (application/json), persistent, with a unique message_id and type set. \
Published messages are delivered at least once (de-duplicate by message_id), through a \
transactional outbox; the outbound exchanges send what nobody is bound for to \
conveyor.unrouted. stock.changed messages are ordered per SKU and carry a version that grows \
by one per change. See README.md and docs/inventory-topic.md."""


def documents() -> dict[str, str]:
    """Every generated file: path relative to ``schemas/`` -> its exact text."""
    files = {f"{JSON_DIR}/{name}.schema.json": _json_text(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = f"# {GENERATED}\n" + to_yaml(asyncapi())
    return files


def json_schemas() -> dict[str, dict]:
    """One JSON Schema per model, with the messages (exchange, routing key) that carry it."""
    schemas: dict[str, dict] = {}
    for model, mode in _models():
        if model.__name__ in schemas:
            raise ValueError(f"two message models are named {model.__name__}")
        carried_by = [{"exchange": s.exchange, "routing_key": s.routing_key, "direction": s.direction}
                      for s in MESSAGES if s.model is model]
        schemas[model.__name__] = {"$schema": JSON_SCHEMA_DIALECT, "$comment": GENERATED,
                                   **model.model_json_schema(mode=mode), "x-conveyor-messages": carried_by}
    return schemas


def asyncapi() -> dict:
    refs, shared = models_json_schema(_models(), ref_template="#/components/schemas/{model}")
    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    for spec in MESSAGES:
        name = spec.model.__name__
        channel_id = _identifier(f"{spec.exchange}-{spec.routing_key}")
        channels[channel_id] = _channel(spec, name)
        action = "send" if spec.direction == "published" else "receive"
        operations[f"{action}-{channel_id}"] = _operation(spec, action, channel_id, name)
        messages[name] = {
            "name": name, "title": name, "summary": _summary(spec.model),
            "contentType": "application/json",
            "payload": refs[(spec.model, _mode(spec))],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Conveyor", "version": CONTRACT_VERSION, "description": INFO},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": shared.get("$defs", {})},
    }


def _channel(spec: MessageSpec, message_name: str) -> dict:
    channel: dict = {
        "address": spec.routing_key,
        "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
        "bindings": {"amqp": {
            "is": "routingKey",
            "exchange": {"name": spec.exchange, "type": "topic", "durable": True, "autoDelete": False,
                         "vhost": "/"},
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
    }
    parameters = re.findall(r"\{(\w+)\}", spec.routing_key)
    if parameters:
        channel["parameters"] = {p: {"description": ROUTING_KEY_PARAMETERS[p]} for p in parameters}
    return channel


def _operation(spec: MessageSpec, action: str, channel_id: str, message_name: str) -> dict:
    operation: dict = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_name}"}],
    }
    if action == "send":
        operation["bindings"] = {"amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True,
                                          "bindingVersion": AMQP_BINDING_VERSION}}
    return operation


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Each model once, in registry order, with the JSON Schema mode of its direction."""
    seen: dict[type[BaseModel], JsonSchemaMode] = {}
    for spec in MESSAGES:
        seen.setdefault(spec.model, _mode(spec))
    return list(seen.items())


def _mode(spec: MessageSpec) -> JsonSchemaMode:
    # What we validate on the way in; what we produce on the way out.
    consumed = any(s.model is spec.model and s.direction == "consumed" for s in MESSAGES)
    return "validation" if consumed else "serialization"


def _identifier(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _summary(model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or model.__name__).split())
    return doc.split(". ")[0].rstrip(".") + "."


def _json_text(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z_$][A-Za-z0-9_./$-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def to_yaml(value: object, indent: int = 0) -> str:
    """Block-style YAML for JSON-like data (no PyYAML needed): strings that could be read
    as anything else are double-quoted with JSON escapes, which YAML accepts as they are."""
    pad = "  " * indent
    if isinstance(value, dict) and value:
        return "".join(f"{pad}{_scalar(key)}:{_nested(item, indent)}" for key, item in value.items())
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            text = to_yaml(item, indent + 1) if _is_block(item) else f"{'  ' * (indent + 1)}{_scalar(item)}\n"
            lines.append(f"{pad}- {text[len(pad) + 2:]}")
        return "".join(lines)
    return f"{pad}{_scalar(value)}\n"


def _nested(value: object, indent: int) -> str:
    return "\n" + to_yaml(value, indent + 1) if _is_block(value) else f" {_scalar(value)}\n"


def _is_block(value: object) -> bool:
    return isinstance(value, (dict, list)) and bool(value)


def _scalar(value: object) -> str:
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)


# --------------------------------------------------------------------------- files


def drift(directory: Path = HERE) -> list[str]:
    """What differs between the models and the committed files (empty: nothing)."""
    expected = documents()
    problems = []
    for path, text in expected.items():
        target = directory / path
        if not target.exists():
            problems.append(f"missing {path}")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"out of date {path}")
    for target in sorted((directory / JSON_DIR).glob("*.schema.json")):
        if f"{JSON_DIR}/{target.name}" not in expected:
            problems.append(f"no longer generated {JSON_DIR}/{target.name}")
    return problems


def write(directory: Path = HERE) -> list[str]:
    """Write every document, delete schemas of models that are gone; returns what changed."""
    changed = drift(directory)
    (directory / JSON_DIR).mkdir(exist_ok=True)
    for path, text in documents().items():
        (directory / path).write_text(text, encoding="utf-8")
    for problem in changed:
        if problem.startswith("no longer generated "):
            (directory / problem.removeprefix("no longer generated ")).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.schemas.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    changes = write()
    print("\n".join(f"updated: {change}" for change in changes) or "contract documents are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
