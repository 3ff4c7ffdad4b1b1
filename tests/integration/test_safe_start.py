"""Safe start, on real PostgreSQL and RabbitMQ: a worker started on a database that was never
migrated consumes nothing (no order marches through the retry tiers into the DLQ), says which
migrations are missing, and starts consuming by itself once ``conveyor db migrate`` ran;
``conveyor db status`` exits 1 while anything is pending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pika
import psycopg

from conveyor import devservices
from conveyor.db.migrate import discover
from conveyor.workers.bootstrap import declare_topology
from conveyor.workers.config import load_settings
from tests.support.workers import ROOT, wait_until


def conveyor(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conveyor", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def queue_state(amqp_url: str, queue: str) -> tuple[int, int]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        method = connection.channel().queue_declare(queue, passive=True).method
        return method.message_count, method.consumer_count
    finally:
        connection.close()


def publish_order(amqp_url: str) -> str:
    order_id = "6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11"
    body = {"order_id": order_id, "customer_id": "c-1", "currency": "EUR", "placed_at": "2026-11-25T10:00:00Z",
            "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "1.00"}]}
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("orders", "order.created", json.dumps(body).encode(),
                              pika.BasicProperties(message_id="safe-start-1", content_type="application/json",
                                                   delivery_mode=2), mandatory=True)
    finally:
        connection.close()
    return order_id


def test_a_worker_waits_for_the_migrations_then_consumes_by_itself(services, fresh_amqp_url, tmp_path):
    with devservices.fresh_database(services) as database_url:  # empty: never migrated
        env = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_AMQP_URL": fresh_amqp_url,
               "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_SCHEMA_CHECK_INTERVAL": "0.2"}
        declare_topology(load_settings(database_url=database_url, amqp_url=fresh_amqp_url))
        order_id = publish_order(fresh_amqp_url)
        # Given `db status` on that database says so, with exit 1
        pending = conveyor(env, "db", "status", "--json")
        assert pending.returncode == 1
        assert {row["status"] for row in json.loads(pending.stdout)} == {"pending"}

        log_path = tmp_path / "worker.log"
        with open(log_path, "w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "conveyor", "run", "orders"], env=env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            # When the worker starts, Then it consumes nothing and names what is missing, once
            wait_until(lambda: "schema_not_ready" in log_path.read_text(), timeout=30, message="the log line")
            time.sleep(1.5)  # several checks later
            assert queue_state(fresh_amqp_url, "conveyor.orders") == (1, 0)
            lines = [json.loads(line) for line in log_path.read_text().splitlines() if "schema_not_ready" in line]
            assert len(lines) == 1
            assert lines[0]["pending"] == [m.filename for m in discover()]

            # When the migrations are applied, Then the worker starts by itself and decides the order
            assert conveyor(env, "db", "migrate").returncode == 0
            assert conveyor(env, "db", "status").returncode == 0
            conveyor(env, "stock", "set", "SKU-1", "5")

            def decided() -> bool:
                with psycopg.connect(database_url, autocommit=True) as conn:
                    return conn.execute("SELECT status FROM orders WHERE order_id = %s",
                                        (order_id,)).fetchone() is not None
            wait_until(decided, timeout=30, message="the order decided after the migration")
            assert queue_state(fresh_amqp_url, "conveyor.orders.dlq")[0] == 0
            assert "schema_ready" in log_path.read_text()
        finally:
            worker.terminate()
            assert worker.wait(timeout=30) == 0
