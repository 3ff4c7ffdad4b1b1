"""`conveyor dlq export|purge|import|audit` on real RabbitMQ and PostgreSQL: an export → purge →
import → replay round trip keeps bodies byte-exact (non-UTF-8 included), a purge asks first,
importing twice does not double, and every state-changing command leaves audit rows."""

from __future__ import annotations

import base64
import json
import uuid

import pika

from conveyor.schemas.errors import InvalidMessage
from tests.support.dlq import (
    DLQ,
    dead_letter_properties,
    dlq,
    drain,
    lock_timeout,
    put_in_dlq,
    raised,
    schema_violation,
)
from tests.support.workers import order_body, queue_depth


def three_letters() -> list[tuple[bytes, object]]:
    order = json.dumps(order_body(("A", 1))).encode()
    binary = b"\xff\xfe\x00order\x80"
    accented = '{"note": "Zoë ✓ \u2028 \\u00e9"}'.encode()
    return [
        (order, dead_letter_properties(order, lock_timeout(), attempts=3)),
        (binary, dead_letter_properties(binary, raised(InvalidMessage("bad_encoding", "byte 0")),
                                        reason="invalid: not retried")),
        (accented, dead_letter_properties(accented, schema_violation("order_id: Field required"),
                                          reason="invalid: not retried")),
    ]


def body_in_dlq(settings, message_id: str) -> bytes:
    shown = dlq(settings, "show", "orders", message_id, "--json").json
    return base64.b64decode(shown["body"]) if shown["body_encoding"] == "base64" else shown["body"].encode()


def test_export_purge_import_replay_keeps_bodies_byte_exact_and_audits_each_change(settings, tmp_path):
    # Given three dead letters, one of them not UTF-8
    letters = three_letters()
    put_in_dlq(settings.amqp_url, letters)
    ids = [properties.message_id for _, properties in letters]
    export_file = tmp_path / "dlq.jsonl"

    # When they are exported, purged, imported (twice) and replayed
    exported = dlq(settings, "export", "orders", str(export_file), "--json")
    purged = dlq(settings, "purge", "orders", "--older-than", "0s", "--yes", "--json")
    depth_after_purge = queue_depth(settings.amqp_url, DLQ)
    imported = dlq(settings, "import", str(export_file), "--json")
    bodies_after_import = [body_in_dlq(settings, i) for i in ids]
    imported_again = dlq(settings, "import", str(export_file), "--json")
    target = _queue(settings.amqp_url)
    replayed = dlq(settings, "replay", "orders", "--all", "--to-queue", target, "--json")

    # Then each step did its part
    assert exported.json["exported"] == 3
    assert [json.loads(line)["body_encoding"] for line in export_file.read_text().splitlines()] == [
        "utf-8", "base64", "utf-8"]
    assert sorted(purged.json["purged"]) == sorted(ids) and depth_after_purge == 0
    assert (imported.json["imported"], imported_again.json["imported"]) == (3, 0)
    assert imported_again.json["already_present"] == 3
    # And the bodies are byte-exact in the DLQ after the import and in the queue after the replay
    assert bodies_after_import == [body for body, _ in letters]
    arrived = drain(settings.amqp_url, target)
    assert [(p.message_id, body) for p, body in arrived] == [(p.message_id, b) for b, p in letters]
    assert replayed.code == 0 and queue_depth(settings.amqp_url, DLQ) == 0
    # And the audit trail has a run per change, by the operator, with a row per message
    runs = sorted(dlq(settings, "audit", "--json").json, key=lambda r: r["started_at"])
    assert [(r["action"], r["succeeded"], r["operator"], r["outcome"]) for r in runs] == [
        ("purge", 3, "ops-alice", "ok"), ("import", 3, "ops-alice", "ok"), ("import", 0, "ops-alice", "ok"),
        ("replay", 3, "ops-alice", "ok")]
    per_outcome = dict(_fetch(settings, "SELECT outcome, count(*) FROM dlq_audit_messages GROUP BY outcome"))
    assert per_outcome == {"purged": 3, "imported": 3, "skipped": 3, "replayed": 3}


def test_purge_asks_first_and_deletes_only_the_group_it_showed(settings):
    # Given two lock timeouts and one schema violation
    letters = three_letters()
    put_in_dlq(settings.amqp_url, [letters[0], (letters[0][0], dead_letter_properties(
        letters[0][0], lock_timeout())), letters[2]])
    fingerprint = next(g["fingerprint"] for g in dlq(settings, "groups", "orders", "--json").json["groups"]
                       if g["error_class"] == "TransientDatabaseError")

    # When the operator says no, then yes
    declined = dlq(settings, "purge", "orders", "--group", fingerprint, stdin="n\n")
    depth_after_no = queue_depth(settings.amqp_url, DLQ)
    accepted = dlq(settings, "purge", "orders", "--group", fingerprint, stdin="yes\n", operator="ops-bob")

    # Then "no" deleted nothing and left no audit run; "yes" deleted exactly the group
    assert declined.code == 1 and "cancelled" in declined.out and depth_after_no == 3
    assert "Delete these 2 message(s)" in declined.err
    assert accepted.code == 0, accepted.err
    remaining = dlq(settings, "list", "orders", "--json").json["letters"]
    assert [r["error_class"] for r in remaining] == ["InvalidMessage"]
    [run] = dlq(settings, "audit", "--json").json
    assert (run["action"], run["operator"], run["succeeded"]) == ("purge", "ops-bob", 2)


def test_purging_an_id_that_is_not_there_exits_4(settings):
    put_in_dlq(settings.amqp_url, three_letters()[:1])

    result = dlq(settings, "purge", "orders", "--id", "no-such-id", "--yes")

    assert result.code == 4 and queue_depth(settings.amqp_url, DLQ) == 1


def _queue(amqp_url: str) -> str:
    name = f"test-roundtrip-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_declare(name, durable=True)
    finally:
        connection.close()
    return name


def _fetch(settings, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        return conn.execute(query).fetchall()

