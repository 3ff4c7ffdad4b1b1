"""The `conveyor` commands a script would call, run as real processes against a real
database and broker: JSON shapes and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pika

from tests.support.workers import ROOT, order_body, publish_orders, running_workers, scalar, settings_for, wait_until


def conveyor(settings, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url,
           "CONVEYOR_AMQP_URL": settings.amqp_url, "CONVEYOR_LOG_FORMAT": "json", **extra_env}
    return subprocess.run([sys.executable, "-m", "conveyor", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_stock_set_then_show_as_json(database_url, amqp_url):
    settings = settings_for(database_url, amqp_url)

    created = conveyor(settings, "stock", "set", "SKU with spaces.1", "12", "--tenant", "shop-1", "--json")
    shown = conveyor(settings, "stock", "show", "SKU with spaces.1", "--tenant", "shop-1", "--json")

    assert created.returncode == 0, created.stderr
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert {k: data[k] for k in ("sku", "on_hand", "reserved", "available", "tenant_id")} == {
        "sku": "SKU with spaces.1", "on_hand": 12, "reserved": 0, "available": 12, "tenant_id": "shop-1"}


def test_unknown_sku_and_order_exit_4(database_url, amqp_url):
    settings = settings_for(database_url, amqp_url)

    sku = conveyor(settings, "stock", "show", "nope", "--json")
    order = conveyor(settings, "order", "show", "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11", "--json")

    assert (sku.returncode, order.returncode) == (4, 4)
    assert json.loads(sku.stdout)["error"] == "not_found"


def test_stock_set_refuses_a_negative_quantity_with_exit_2(database_url, amqp_url):
    result = conveyor(settings_for(database_url, amqp_url), "stock", "set", "A", "-1")

    assert result.returncode == 2
    assert "quantity must be >= 0" in result.stderr


def test_order_show_json_has_status_and_lines(database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url)
    assert conveyor(settings, "stock", "set", "A", "5").returncode == 0
    body = order_body(("A", 2), ("A", 1))
    with running_workers(settings, ["orders"]):
        publish_orders(settings.amqp_url, [body])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM orders") == 1)

    result = conveyor(settings, "order", "show", body["order_id"], "--json")

    assert result.returncode == 0, result.stderr
    order = json.loads(result.stdout)
    assert order["order_id"] == body["order_id"]
    assert order["status"] == "RESERVED"
    assert [(ln["line_no"], ln["sku"], ln["quantity"]) for ln in order["lines"]] == [(1, "A", 2), (2, "A", 1)]
    assert order["reservations"] == [{"sku": "A", "quantity": 3, "state": "HELD"}]


def test_db_status_and_migrate_report_as_json(database_url, amqp_url):
    settings = settings_for(database_url, amqp_url)

    migrate = conveyor(settings, "db", "migrate", "--json")
    status = conveyor(settings, "db", "status", "--json")

    assert migrate.returncode == 0 and json.loads(migrate.stdout)["applied"] == []
    assert status.returncode == 0
    assert [row["status"] for row in json.loads(status.stdout)] == ["applied"] * len(json.loads(status.stdout))


def test_topology_declare_creates_the_public_names(database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url)

    result = conveyor(settings, "topology", "declare", CONVEYOR_QUEUE_MAX_LENGTH="0")

    assert result.returncode == 0, result.stderr
    assert "unbounded" in result.stdout
    connection = pika.BlockingConnection(pika.URLParameters(fresh_amqp_url))
    try:
        channel = connection.channel()
        for queue in ("conveyor.orders", "conveyor.orders.dlq", "conveyor.orders.retry.1s"):
            channel.queue_declare(queue, passive=True)
        for exchange in ("orders", "order-events"):
            channel.exchange_declare(exchange, passive=True)
    finally:
        connection.close()


def test_topology_declare_without_a_management_api_declares_the_queues_and_exits_1_naming_the_fix(
        database_url, fresh_amqp_url):
    settings = settings_for(database_url, fresh_amqp_url)

    result = conveyor(settings, "topology", "declare", "--json", CONVEYOR_QUEUE_MAX_LENGTH="500",
                      CONVEYOR_MANAGEMENT_URL="http://127.0.0.1:1")

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "no management API answered at http://127.0.0.1:1" in line and "rabbitmqctl set_policy" in line
    assert '"max-length":500' in line
    report = json.loads(result.stdout)
    assert report["policy"] is None and report["declared"] == ["orders", "payments", "shipments"]


def test_health_reports_an_unreachable_broker_with_exit_3(database_url):
    settings = settings_for(database_url, "amqp://guest:secret-pw@127.0.0.1:1/%2F")

    result = conveyor(settings, "health", "--json")

    assert result.returncode == 3
    checks = json.loads(result.stdout)["checks"]
    assert checks["database"]["ok"] is True and checks["broker"]["ok"] is False
    assert "secret-pw" not in result.stdout + result.stderr


def test_a_bad_setting_stops_start_up_with_one_line(database_url):
    env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_PREFETCH": "lots"}

    result = subprocess.run([sys.executable, "-m", "conveyor", "run", "orders"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "CONVEYOR_PREFETCH" in result.stderr
