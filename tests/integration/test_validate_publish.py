"""`conveyor validate` and `conveyor publish` as real processes: every bad input with its exit
code, a refused document never reaching the broker, a good one reserved by a running worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pika
import pytest

from tests.support.workers import (
    ROOT,
    order_body,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    take_all,
    wait_until,
)

ORDERS_QUEUE = "conveyor.orders"


def conveyor(*args: str, settings=None, stdin: bytes | None = None, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVEYOR_LOG_FORMAT": "json", **extra_env}
    if settings is not None:
        env.update(CONVEYOR_DATABASE_URL=settings.database_url, CONVEYOR_AMQP_URL=settings.amqp_url)
    done = subprocess.run([sys.executable, "-m", "conveyor", *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, timeout=60)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order_body(("SKU-1", 2))))
    return path


def test_a_good_document_is_accepted(good_file):
    done = conveyor("validate", str(good_file))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "accepted: order.created"


def test_json_output_of_an_accepted_and_a_refused_document(good_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"order_id": "x"}')

    accepted = conveyor("validate", "--json", str(good_file))
    refused = conveyor("validate", "--json", str(bad))

    assert json.loads(accepted.stdout) == {"accepted": True, "type": "order.created", "error_code": None,
                                           "reason": None, "ignored_fields": []}
    assert refused.returncode == 1
    verdict = json.loads(refused.stdout)
    assert verdict["accepted"] is False and verdict["error_code"] == "schema_violation"
    assert verdict["reason"].startswith("schema_violation: order_id:")
    assert last_line(refused.stderr) == f"conveyor: refused: {verdict['reason']}"


def test_standard_input_and_another_type():
    cancel = json.dumps({"order_id": str(uuid.uuid4()), "reason": "customer asked"}).encode()

    done = conveyor("validate", "--type", "order.cancelled", "-", stdin=cancel)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "accepted: order.cancelled"


@pytest.mark.parametrize("name, content, expected", [
    ("empty.json", b"", "conveyor: refused: not_json: Expecting value: line 1 column 1 (char 0) (the file is empty)"),
    ("text.json", b"hello", "conveyor: refused: not_json: Expecting value: line 1 column 1 (char 0)"),
    ("latin1.json", b'{"customer_id": "\xe9"}', "conveyor: refused: bad_encoding: body is not UTF-8 (byte 17)"),
    ("float.json", b'{"a": 1.5}', "conveyor: refused: float_number: number 1.5 has a fraction; "
                                  "send money as a string"),
    ("big.json", b'{"a": "' + b"x" * 2000 + b'"}', "conveyor: refused: too_large: body is 2009 bytes, "
                                                   "limit is 1024"),
])
def test_a_refused_document_exits_1_with_the_workers_reason(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)

    done = conveyor("validate", str(path), CONVEYOR_MAX_MESSAGE_BYTES="1024")

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == expected


@pytest.mark.parametrize("path, expected", [
    ("/nonexistent/order.json", "conveyor: /nonexistent/order.json: no such file"),
    ("/tmp", "conveyor: /tmp: is a directory, not a file"),
    ("/proc/self/mem", "conveyor: /proc/self/mem: cannot read: Input/output error"),  # unreadable even as root
])
def test_a_path_that_is_not_a_readable_file_exits_2(path, expected):
    done = conveyor("validate", path)

    assert done.returncode == 2
    assert done.stderr.strip() == expected


def test_an_unknown_type_is_a_usage_error(good_file):
    validate = conveyor("validate", "--type", "order.reserved", str(good_file))
    publish = conveyor("publish", "order.reserved", str(good_file))

    assert (validate.returncode, publish.returncode) == (2, 2)
    assert "invalid choice: 'order.reserved'" in validate.stderr


def test_the_help_documents_the_exit_codes():
    text = conveyor("validate", "--help").stdout + conveyor("publish", "--help").stdout

    assert "1 refused" in text and "2 usage" in text and "3 the broker is unreachable" in " ".join(text.split())


def test_a_refused_publish_sends_nothing(settings, tmp_path):
    # Given the topology and no worker (so whatever is published stays in the queue)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**order_body(("SKU-1", 1)), "currency": "euro"}))

    # When the refused document is "published", and then a good one
    refused = conveyor("publish", "order.created", str(bad), settings=settings)
    depth_after_refusal = queue_depth(settings.amqp_url, ORDERS_QUEUE)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(order_body(("SKU-1", 1))))
    sent = conveyor("publish", "order.created", str(good), "--json", settings=settings)

    # Then nothing reached the queue for the refusal, and one message for the good one
    assert refused.returncode == 1
    assert last_line(refused.stderr).startswith("conveyor: refused: schema_violation: currency")
    assert depth_after_refusal == 0
    assert sent.returncode == 0, sent.stderr
    assert wait_until(lambda: queue_depth(settings.amqp_url, ORDERS_QUEUE) == 1, timeout=5)


def test_a_published_order_carries_the_contracts_properties(settings, good_file):
    done = conveyor("publish", "order.created", str(good_file), "--message-id", "shop-order-1", "--json",
                    settings=settings)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"published": True, "type": "order.created", "message_id": "shop-order-1"}
    [(method, properties, body)] = take_all(settings.amqp_url, ORDERS_QUEUE, expect=1)
    assert (method.exchange, method.routing_key) == ("orders", "order.created")
    assert (properties.message_id, properties.type, properties.content_type, properties.delivery_mode) == (
        "shop-order-1", "order.created", "application/json", 2)
    assert body == good_file.read_bytes()


def test_a_bad_message_id_is_refused_like_the_worker_would(settings, good_file):
    done = conveyor("publish", "order.created", str(good_file), "--message-id", "a\tb", settings=settings)

    assert done.returncode == 1
    assert last_line(done.stderr) == "conveyor: refused: bad_message_id: message_id contains control characters"
    assert queue_depth(settings.amqp_url, ORDERS_QUEUE) == 0


def test_a_good_publish_is_reserved_by_a_running_worker(settings, tmp_path):
    set_stock(settings.database_url, "SKU-1", 5)
    body = order_body(("SKU-1", 2))
    path = tmp_path / "order.json"
    path.write_text(json.dumps(body))

    with running_workers(settings, ["orders"]):
        done = conveyor("publish", "order.created", str(path), settings=settings)
        wait_until(lambda: scalar(settings.database_url, "SELECT status FROM orders WHERE order_id = %s",
                                  (body["order_id"],)) == "RESERVED" or None, message="order reserved")

    assert done.returncode == 0, done.stderr
    uuid.UUID(done.stdout.strip())  # the new message_id
    assert scalar(settings.database_url, "SELECT reserved FROM stock_levels WHERE sku = 'SKU-1'") == 2


def test_publish_exits_1_when_no_queue_is_bound(fresh_amqp_url, database_url, good_file):
    # Given a vhost with the exchange but no Conveyor queue bound to it
    connection = pika.BlockingConnection(pika.URLParameters(fresh_amqp_url))
    connection.channel().exchange_declare("orders", exchange_type="topic", durable=True)
    connection.close()

    done = conveyor("publish", "order.created", str(good_file), CONVEYOR_AMQP_URL=fresh_amqp_url,
                    CONVEYOR_DATABASE_URL=database_url)

    assert done.returncode == 1
    assert "conveyor: not delivered: order.created on exchange 'orders' is bound to no queue" in done.stderr


def test_publish_exits_1_when_the_exchange_is_missing(fresh_amqp_url, database_url, good_file):
    done = conveyor("publish", "order.created", str(good_file), CONVEYOR_AMQP_URL=fresh_amqp_url,
                    CONVEYOR_DATABASE_URL=database_url)

    assert done.returncode == 1
    assert "conveyor: not delivered: no exchange 'orders' in this vhost" in done.stderr


def test_publish_exits_3_when_the_broker_is_unreachable(good_file):
    done = conveyor("publish", "order.created", str(good_file), CONVEYOR_AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F")

    assert done.returncode == 3
    assert "conveyor: cannot reach a dependency: AMQPConnectionError" in done.stderr


def test_the_kit_publisher_reconnects_once_when_its_connection_died(settings):
    import socket

    from conveyor.workers.kit.publisher import ConveyorPublisher

    with ConveyorPublisher(settings.amqp_url, settings=settings) as publisher:
        # Given a publisher whose connection was cut under it after a first publish
        first = publisher.order_created(order_body(("SKU-1", 1)))
        dead = publisher._connection
        dead._impl._transport._sock.shutdown(socket.SHUT_RDWR)
        assert dead.is_open  # pika has not noticed yet: the publish finds out

        # When it publishes again
        drops = []
        drop = publisher._drop
        publisher._drop = lambda: (drops.append(1), drop())  # type: ignore[method-assign]
        second = publisher.order_created(order_body(("SKU-1", 1)))

        # Then the failed try was dropped, the publish went out on a new connection, and both are queued
        assert drops == [1]
        assert publisher._connection is not dead and publisher._connection.is_open
    got = take_all(settings.amqp_url, ORDERS_QUEUE, expect=2)
    assert [properties.message_id for _, properties, _ in got] == [first, second]


def test_the_kit_publisher_refuses_what_a_worker_would_dead_letter(settings):
    from conveyor.workers.kit.publisher import ConveyorPublisher, DocumentRefused

    with ConveyorPublisher(settings.amqp_url, settings=settings) as publisher:
        with pytest.raises(DocumentRefused) as refused:
            publisher.order_created({**order_body(("SKU-1", 1)), "items": []})

    assert refused.value.verdict.error_code == "schema_violation"
    assert queue_depth(settings.amqp_url, ORDERS_QUEUE) == 0
