"""Inventory changes reach partners through the outbox relay, on real PostgreSQL and
RabbitMQ: a backlog built while no relay ran, changes made by hand-written SQL, the
partner-facing message and routing key, and ``conveyor relay status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pika
import psycopg
import pytest

from conveyor.db.outbox import Outbox
from conveyor.schemas.inventory import StockChanged, routing_key
from conveyor.schemas.parsing import parse_message
from conveyor.workers.runtime import topology
from tests.support.relay import (
    assert_contiguous_in_order,
    change_stock,
    collect,
    current_versions,
    pending,
    running_relay,
    seed_skus,
)
from tests.support.workers import ROOT, event_tap, wait_until

# Every test that uses `settings` runs once more through PgBouncer (transaction pooling).
pytestmark = pytest.mark.also_through_pgbouncer


def test_a_backlog_built_while_no_relay_ran_arrives_complete_and_in_order_per_sku(settings):
    # Given 50 SKUs and a partner bound to every inventory change
    skus = [f"SKU-{n:03d}" for n in range(50)]
    seed_skus(settings.database_url, skus)
    with event_tap(settings.amqp_url, exchange="inventory") as tap:
        # When 1,000 changes are made while no relay runs, and then one starts
        change_stock(settings.database_url, skus, 1_000)
        assert pending(settings.database_url) == 1_050
        with running_relay(settings, batch_size=200):
            wait_until(lambda: pending(settings.database_url) == 0, timeout=15, message="outbox drained")
            received = collect(settings.amqp_url, tap, expect=1_050)

    # Then every change arrived exactly once, and per SKU the versions are 1..21 in order
    assert len(received) == len({m.message_id for m in received}) == 1_050
    assert_contiguous_in_order(received, expected_last=current_versions(settings.database_url))


def test_a_hand_written_sql_update_is_relayed_with_a_valid_partner_message(settings):
    # Given a SKU whose name has a dot and spaces, and a partner bound to just that SKU
    sku = "Blue shirt.XL"
    seed_skus(settings.database_url, [sku], on_hand=10, tenant="shop-1")
    binding = routing_key("shop-1", sku)
    with event_tap(settings.amqp_url, exchange="inventory", binding=binding) as tap, \
            running_relay(settings, poll_interval=0.5):
        # When someone changes the stock with SQL, outside Conveyor
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("UPDATE stock_levels SET on_hand = 7, reserved = 2 WHERE sku = %s", (sku,))
        received = collect(settings.amqp_url, tap, expect=2)

    # Then the partner got the opening level and the change, with the full state and a version
    assert binding == "stock.changed.shop-1.Blue%20shirt%2EXL"
    assert [m.routing_key for m in received] == [binding, binding]
    assert {m.type for m in received} == {"stock.changed"}
    change = received[-1].body
    assert {k: change[k] for k in ("sku", "tenant_id", "on_hand", "reserved", "available", "version", "cause")} == {
        "sku": sku, "tenant_id": "shop-1", "on_hand": 7, "reserved": 2, "available": 5, "version": 2,
        "cause": "direct-sql"}
    parse_message(json.dumps(change).encode(), StockChanged, max_bytes=65536)  # the published contract
    assert all(uuid.UUID(m.message_id) for m in received)


@pytest.mark.parametrize("tenant, sku", [
    ("shop-1", "plain_SKU-1"), ("shop.eu", "a.b c"), ("t", "*#%/é€"), ("t", "x" * 128), ("t", "é" * 128),
])
def test_sql_and_python_build_the_same_routing_key(database_url, tenant, sku):
    with psycopg.connect(database_url, autocommit=True) as conn:
        from_sql = conn.execute("SELECT conveyor_stock_routing_key(%s, %s)", (tenant, sku)).fetchone()[0]
    assert from_sql == routing_key(tenant, sku)
    assert len(from_sql.encode()) <= 255


def test_relay_status_reports_pending_rows_and_the_active_relay(settings):
    # Given two changes waiting
    seed_skus(settings.database_url, ["A", "B"])
    code_before, before = _status(settings)
    # When a relay has published them
    with running_relay(settings, holder="relay-under-test"):
        wait_until(lambda: pending(settings.database_url) == 0, message="outbox drained")
        code_after, after = _status(settings)

    # Then: rows waiting with no relay is a problem (exit 1); published, all is well (exit 0)
    assert (code_before, code_after) == (1, 0)
    assert before["pending"] == 2 and before["oldest_pending_age_s"] >= 0
    assert before["pending_by_exchange"] == {"inventory": 2}
    assert after["pending"] == 0 and after["oldest_pending_age_s"] is None
    assert after["active_relay"] == "relay-under-test" and after["lease_live"] is True
    assert after["sent_total"] == 2 and after["last_sent_at"]


def _status(settings) -> tuple[int, dict]:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url}
    done = subprocess.run([sys.executable, "-m", "conveyor", "relay", "status", "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_partner_queue_that_refuses_messages_still_gets_each_skus_changes_in_order(settings):
    # Given a partner whose queue holds 2 messages and refuses more (the broker nacks them)
    seed_skus(settings.database_url, ["A"])
    change_stock(settings.database_url, ["A"], 5)
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
    channel = connection.channel()
    topology.declare_exchanges(channel)
    channel.queue_declare("small-partner", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    channel.queue_bind("small-partner", "inventory", routing_key="#")
    try:
        # When the relay publishes while the partner reads slowly
        versions: list[int] = []
        with running_relay(settings, poll_interval=0.2):
            deadline = time.monotonic() + 15
            while len(versions) < 6 and time.monotonic() < deadline:
                method, _props, body = channel.basic_get("small-partner", auto_ack=True)
                if method is None:
                    connection.sleep(0.3)
                else:
                    versions.append(json.loads(body)["version"])
            wait_until(lambda: pending(settings.database_url) == 0, message="outbox drained")
    finally:
        connection.close()

    # Then it got every version once, in order, although most were refused at first
    assert versions == [1, 2, 3, 4, 5, 6]


def test_a_claim_takes_the_oldest_rows_of_each_sku_without_letting_a_hot_one_crowd_out_the_rest(database_url):
    # Given 30 changes of a hot SKU, then one each of B and C, and one order event without a key
    seed_skus(database_url, ["HOT", "B", "C"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM outbox")
    change_stock(database_url, ["HOT"], 30)
    change_stock(database_url, ["B", "C"], 2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        Outbox(conn).add(exchange="order-events", routing_key="order.x", payload={}, correlation_id=None)
        hot_key = routing_key("default", "HOT")

        # When the relay claims 10 rows, at most 2 per SKU, and then with HOT cooling down
        with conn.transaction():
            fair = Outbox(conn).claim(10, per_key=2)
        with conn.transaction():
            without_hot = Outbox(conn).claim(10, per_key=2, skip_keys=[hot_key])

    # Then HOT's two oldest changes, B, C and the keyless event are claimed, in id order
    assert [r.ordering_key for r in fair] == [hot_key, hot_key, routing_key("default", "B"),
                                              routing_key("default", "C"), None]
    assert [json.loads(r.payload)["version"] for r in fair[:2]] == [2, 3]
    assert [r.id for r in fair] == sorted(r.id for r in fair)
    assert hot_key not in {r.ordering_key for r in without_hot} and len(without_hot) == 3
