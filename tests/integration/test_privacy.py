"""Customers' personal data on real PostgreSQL and RabbitMQ: sealed at rest, never in events
or logs, exported, erased everywhere Conveyor keeps it (tables, pending events, DLQ copies),
keys rotated, and the key file's faults as clear one-line errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import psycopg
import pytest

from conveyor.db.crypto import new_key_file
from conveyor.workers import cli
from tests.support.workers import (
    event_tap,
    order_body,
    publish,
    publish_orders,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    take_all,
    wait_until,
)

EMAIL = "ada.lovelace@example.org"
CUSTOMER = {"email": EMAIL, "name": "Ada Lovelace", "phone": "+44 20 7946 0000",
            "shipping_address": {"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH",
                                 "country": "GB"}}
DLQ = "conveyor.orders.dlq"


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    path = tmp_path / "pii-keys.json"
    new_key_file(path, "k1")
    monkeypatch.setenv("CONVEYOR_PII_KEY_FILE", str(path))
    return path


def customer_order(sku: str = "A", quantity: int = 1, *, customer_id: str = "cust-ada") -> dict:
    body = order_body((sku, quantity))
    body["customer_id"] = customer_id
    body["customer"] = CUSTOMER
    return body


def run_cli(monkeypatch, settings, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CONVEYOR_AMQP_URL", settings.amqp_url)
    capsys.readouterr()  # what the workers logged before
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def database_text(database_url: str) -> str:
    """Every row of every table of every Conveyor schema, as text (what a search would find)."""
    with psycopg.connect(database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'")]
        chunks = []
        for table in tables:
            with conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:  # noqa: S608 - catalog names
                chunks += [bytes(block).decode(errors="replace") for block in copy]
    return "\n".join(chunks)


def test_customer_data_is_sealed_exported_and_erased_everywhere(settings, key_file, monkeypatch, capsys):
    # Given stock, a worker with a key file, a partner listening, and two orders of Ada:
    # one reserved, one dead-lettered (an unknown message type would do; here: a bad quantity)
    settings = settings.model_copy(update={"pii_key_file": str(key_file)})
    set_stock(settings.database_url, "A", 5)
    good = customer_order()
    bad = customer_order()
    bad["items"][0]["quantity"] = 2.0  # refused by the parser: dead-lettered with the body intact
    with event_tap(settings.amqp_url) as tap, running_workers(settings, ["orders", "relay"]):
        publish_orders(settings.amqp_url, [good])
        publish(settings.amqp_url, [(json.dumps(bad).encode(), {})])
        [(_, _, event)] = take_all(settings.amqp_url, tap, expect=1)
        wait_until(lambda: queue_depth(settings.amqp_url, DLQ) == 1, message="bad order dead-lettered")

    # Then the data is stored, sealed: the email is in no table and in no event
    assert scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 1
    before = database_text(settings.database_url)
    assert EMAIL not in before and "cust-ada" in before  # the search sees the rows
    assert EMAIL.encode() not in event and b"customer\"" not in event.replace(b"customer_id", b"")
    assert json.loads(event)["customer_id"] == "cust-ada"

    # When the customer asks for their data
    code, out, _ = run_cli(monkeypatch, settings, capsys, "gdpr", "export", "cust-ada", "--json")
    assert code == 0, out
    exported = json.loads(out)
    assert [o["order_id"] for o in exported["orders"]] == [good["order_id"]]
    assert exported["personal_data"][0]["customer"]["email"] == EMAIL
    assert exported["personal_data"][0]["customer"]["shipping_address.city"] == "London"

    # When they ask to be erased
    code, out, _ = run_cli(monkeypatch, settings, capsys, "gdpr", "erase", "cust-ada", "--json")
    erased = json.loads(out)

    # Then nothing anywhere holds their email or their id; the order's facts stay
    assert code == 0, out
    assert erased["database"] == {"data_keys": 1, "customer_records": 1, "orders": 1, "outbox_events": 0}
    assert erased["dead_letters"]["redacted"][DLQ] == 1
    text = database_text(settings.database_url)
    assert EMAIL not in text and "cust-ada" not in text
    assert scalar(settings.database_url, "SELECT total::text FROM orders") == "9.9900"
    dead = take_all(settings.amqp_url, DLQ, expect=1)
    assert len(dead) == 1
    _, properties, body = dead[0]
    assert EMAIL.encode() not in body and b"cust-ada" not in body
    assert all("cust-ada" not in str(v) and EMAIL not in str(v) for v in (properties.headers or {}).values())
    assert json.loads(body)["order_id"] == bad["order_id"]  # still replayable, without the person
    assert scalar(settings.database_url, "SELECT count(*) FROM audit.privacy_requests WHERE action = 'erase'") == 1

    # And a second request finds nothing (exit 4), an erase again is harmless
    assert run_cli(monkeypatch, settings, capsys, "gdpr", "export", "cust-ada")[0] == 4
    assert run_cli(monkeypatch, settings, capsys, "gdpr", "erase", "cust-ada", "--skip-dlq")[0] == 0


def test_without_a_key_file_customer_data_is_dead_lettered_with_the_reason(settings):
    set_stock(settings.database_url, "A", 5)
    with running_workers(settings, ["orders"]):
        publish_orders(settings.amqp_url, [customer_order()])
        [(_, properties, _)] = take_all(settings.amqp_url, DLQ, expect=1)
    assert "CONVEYOR_PII_KEY_FILE" in properties.headers["x-conveyor-error-message"]
    assert scalar(settings.database_url, "SELECT count(*) FROM orders") == 0


def test_rotate_key_rewraps_every_data_key_and_the_old_data_still_opens(settings, key_file, monkeypatch, capsys):
    settings = settings.model_copy(update={"pii_key_file": str(key_file)})
    set_stock(settings.database_url, "A", 10)
    with running_workers(settings, ["orders"]):
        publish_orders(settings.amqp_url, [customer_order(customer_id=f"c{i}") for i in range(3)])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 3)

    code, out, _ = run_cli(monkeypatch, settings, capsys, "pii", "rotate-key", "--json")
    assert code == 0 and json.loads(out) == {"current": "k2", "rewrapped": 3}
    code, out, _ = run_cli(monkeypatch, settings, capsys, "pii", "status", "--json")
    assert json.loads(out)["data_keys_per_key_id"] == {"k2": 3}
    code, out, _ = run_cli(monkeypatch, settings, capsys, "gdpr", "export", "c1", "--json")
    assert json.loads(out)["personal_data"][0]["customer"]["email"] == EMAIL


def test_key_file_faults_are_one_line_errors(settings, key_file, tmp_path, monkeypatch, capsys):
    settings = settings.model_copy(update={"pii_key_file": str(key_file)})
    set_stock(settings.database_url, "A", 10)
    with running_workers(settings, ["orders"]):
        publish_orders(settings.amqp_url, [customer_order()])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 1)

    monkeypatch.setenv("CONVEYOR_PII_KEY_FILE", str(tmp_path / "missing.json"))
    code, _, err = run_cli(monkeypatch, settings, capsys, "pii", "status")
    assert code == 2 and "missing.json" in err and len(err.strip().splitlines()) == 1

    other = tmp_path / "other.json"
    new_key_file(other, "k1")  # the same key id, another key: it does not decrypt the data
    monkeypatch.setenv("CONVEYOR_PII_KEY_FILE", str(other))
    code, _, err = run_cli(monkeypatch, settings, capsys, "pii", "rotate-key")
    assert code == 2 and "does not decrypt" in err
    assert json.loads(other.read_text())["current"] == "k1"  # nothing half-done: no key added

    # Erasure needs no key: with the wrong file it still shreds, and says what it could not do
    code, _, err = run_cli(monkeypatch, settings, capsys, "gdpr", "erase", "cust-ada", "--skip-dlq")
    assert code == 0 and "matched by customer id only" in err
    assert scalar(settings.database_url, "SELECT count(*) FROM privacy.customer_keys") == 0


def test_personal_data_never_reaches_the_logs(settings, key_file, tmp_path):
    set_stock(settings.database_url, "A", 5)
    env = {"CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url,
           "CONVEYOR_PII_KEY_FILE": str(key_file), "CONVEYOR_LOG_LEVEL": "DEBUG", "CONVEYOR_LOG_FORMAT": "json",
           "PATH": "/usr/bin:/bin"}
    worker = subprocess.Popen([sys.executable, "-m", "conveyor", "run", "orders"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        publish_orders(settings.amqp_url, [customer_order()])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 1)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode()
    assert "message_processed" in output
    assert EMAIL not in output and "Lovelace" not in output


def test_a_worker_that_cached_a_shredded_key_seals_the_next_order_under_a_new_one(
        settings, key_file, monkeypatch, capsys):
    # Given a running worker that sealed Ada's first order (and cached her data key)
    settings = settings.model_copy(update={"pii_key_file": str(key_file)})
    set_stock(settings.database_url, "A", 10)
    with running_workers(settings, ["orders"]):
        first = customer_order()
        publish_orders(settings.amqp_url, [first])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 1)
        # When she is erased while the worker runs, and then orders again
        assert run_cli(monkeypatch, settings, capsys, "gdpr", "erase", "cust-ada", "--skip-dlq")[0] == 0
        second = customer_order()
        publish_orders(settings.amqp_url, [second])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 1
                   and scalar(settings.database_url, "SELECT count(*) FROM orders") == 2)

    # Then the second order is sealed under a new data key (the shredded one is gone for good)
    code, out, _ = run_cli(monkeypatch, settings, capsys, "gdpr", "export", "cust-ada", "--json")
    exported = json.loads(out)
    assert code == 0 and [o["order_id"] for o in exported["orders"]] == [second["order_id"]]
    assert exported["personal_data"][0]["customer"]["email"] == EMAIL
    assert scalar(settings.database_url, "SELECT count(*) FROM privacy.customer_keys") == 1


def archive_texts(root) -> str:
    """Every archived file, decompressed, as text (what a search of the archive would find)."""
    return "\n".join(gzip.decompress(path.read_bytes()).decode(errors="replace") if path.suffix == ".gz"
                     else path.read_text(errors="replace") for path in sorted(root.rglob("*")) if path.is_file())


def age_order(database_url: str, order_id: str, month: str) -> None:
    """Move a delivered order (and its registry entry) to an old month, as time would."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT maintenance.conveyor_ensure_partition('orders.orders', %s::date)", (month,))
        conn.execute("UPDATE order_registry SET created_at = %s::timestamptz WHERE order_id = %s", (month, order_id))
        conn.execute("UPDATE orders SET created_at = %s::timestamptz, status = 'DELIVERED' WHERE order_id = %s",
                     (month, order_id))


def test_an_archived_month_holds_no_email_and_an_erasure_shreds_its_copy(settings, key_file, tmp_path,
                                                                          monkeypatch, capsys):
    # Given Ada's order, delivered long ago, archived (its customer data sealed inside the files)
    settings = settings.model_copy(update={"pii_key_file": str(key_file)})
    set_stock(settings.database_url, "A", 5)
    with running_workers(settings, ["orders"]):
        order = customer_order()
        publish_orders(settings.amqp_url, [order])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 1)
    age_order(settings.database_url, order["order_id"], "2025-01-01")
    monkeypatch.setenv("CONVEYOR_ARCHIVE_DIR", str(tmp_path / "archive"))
    monkeypatch.setenv("CONVEYOR_PII_RETENTION", "0")
    code, out, err = run_cli(monkeypatch, settings, capsys, "archive", "run", "--month", "2025-01", "--json")
    assert code == 0, err
    archived = archive_texts(tmp_path / "archive")
    assert order["order_id"] in archived and EMAIL not in archived  # the month is there, sealed

    # When Ada is erased, and the month is restored
    assert run_cli(monkeypatch, settings, capsys, "gdpr", "erase", "cust-ada", "--skip-dlq")[0] == 0
    code, _, err = run_cli(monkeypatch, settings, capsys, "archive", "restore", "2025-01")
    assert code == 0, err

    # Then the restored order carries the erased id and no readable personal data anywhere
    text = database_text(settings.database_url)
    assert EMAIL not in text and "cust-ada" not in text
    assert scalar(settings.database_url, "SELECT customer_id FROM orders").startswith("erased:")
    assert scalar(settings.database_url, "SELECT count(*) FROM privacy.order_customers") == 0
    assert scalar(settings.database_url, "SELECT count(*) FROM privacy.customer_keys") == 0  # shredded
