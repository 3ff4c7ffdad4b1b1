"""The contract documents in schemas/ (JSON Schema per model, AsyncAPI) are generated from
the models; this fails when they drift apart. Fix: `python -m conveyor.schemas.export` (make schemas)."""

from __future__ import annotations

import json

from conveyor.schemas import export
from conveyor.schemas.inventory import StockChanged, routing_key, routing_word
from conveyor.schemas.registry import MESSAGES


def test_the_committed_contract_documents_match_the_models():
    # Given the models as they are, when the documents are generated in memory
    problems = export.drift()

    # Then the committed files say exactly the same
    assert problems == [], (
        "schemas/ is out of date with the models: run `python -m conveyor.schemas.export` and commit the result\n"
        + "\n".join(problems))


def test_every_registered_message_has_a_channel_an_operation_and_a_schema():
    document = export.asyncapi()
    addresses = {(c["bindings"]["amqp"]["exchange"]["name"], c["address"]) for c in document["channels"].values()}
    actions = sorted(op["action"] for op in document["operations"].values())

    assert addresses == {(s.exchange, s.routing_key) for s in MESSAGES}
    assert actions == sorted("send" if s.direction == "published" else "receive" for s in MESSAGES)
    assert {s.model.__name__ for s in MESSAGES} <= set(document["components"]["schemas"])
    assert set(export.json_schemas()) == {s.model.__name__ for s in MESSAGES}


def test_the_stock_changed_schema_requires_what_partners_rely_on():
    schema = export.json_schemas()["StockChanged"]

    assert set(schema["required"]) == {"sku", "tenant_id", "on_hand", "reserved", "available", "version",
                                       "occurred_at"}
    assert schema["additionalProperties"] is False
    assert schema["x-conveyor-messages"] == [
        {"exchange": "inventory", "routing_key": "stock.changed.{tenant}.{sku}", "direction": "published"}]
    assert StockChanged.model_validate(json.loads(
        '{"sku": "A", "tenant_id": "t", "on_hand": 3, "reserved": 1, "available": 2, "version": 7,'
        ' "occurred_at": "2026-01-01T00:00:00.000001Z", "cause": "direct-sql"}')).version == 7


def test_routing_words_keep_one_topic_word_per_sku():
    cases = {
        "SKU-1_a": "SKU-1_a",
        "Blue shirt.XL": "Blue%20shirt%2EXL",
        "*": "%2A", "#": "%23", "%": "%25",
        "é€": "%C3%A9%E2%82%AC",
    }
    assert {text: routing_word(text) for text in cases} == cases


def test_a_routing_key_too_long_for_amqp_carries_a_hash_of_the_sku():
    long_sku = "é" * 128

    key = routing_key("shop.eu", long_sku)

    assert key.startswith("stock.changed.shop%2Eeu.=") and len(key.split(".")[-1]) == 33
    assert len(key.encode()) <= 255
    assert routing_key("shop.eu", long_sku) == key != routing_key("shop.eu", long_sku[:-1])


def test_the_yaml_writer_quotes_what_yaml_would_misread():
    text = export.to_yaml({"on": "yes", "ref": "#/a", "n": 1, "t": True, "none": None, "v": "1.0",
                           "empty": {}, "list": [{"a": "b c", "d": "e"}, "x"], "ok": "plain/text"})

    assert text == ('"on": "yes"\nref: "#/a"\n"n": 1\nt: true\nnone: null\nv: "1.0"\nempty: {}\n'
                    'list:\n  - a: "b c"\n    d: e\n  - x\nok: plain/text\n')
