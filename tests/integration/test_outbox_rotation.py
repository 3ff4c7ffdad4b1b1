"""The outbox rotates through three partitions and truncates the drained ones (V009), so
its dead rows never wait for VACUUM: on real PostgreSQL and RabbitMQ, with a relay
publishing while writers straddle a rotation and while a long transaction pins the xmin
horizon (which keeps VACUUM from reclaiming anything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from conveyor.db.outbox import Outbox
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


def rotation(database_url: str) -> dict:
    with psycopg.connect(database_url, autocommit=True) as conn:
        slot, rotations, truncations = conn.execute(
            "SELECT slot, rotations, truncations FROM outbox_rotation").fetchone()
        sizes = dict(conn.execute("SELECT slot, pg_relation_size(format('outbox_slot_%s', slot)) "
                                  "FROM generate_series(0, 2) slot").fetchall())
    return {"slot": slot, "rotations": rotations, "truncations": truncations, "sizes": sizes}


def relay_status(settings) -> dict:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url}
    done = subprocess.run([sys.executable, "-m", "conveyor", "relay", "status", "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def only_the_current_slot_has_pages(database_url: str) -> bool:
    state = rotation(database_url)
    return all(size == 0 for slot, size in state["sizes"].items() if slot != state["slot"])


def test_a_rotating_outbox_publishes_everything_in_order_and_gives_the_space_back(settings):
    # Given 20 SKUs, a partner bound to every inventory change, and slots of 100 rows
    skus = [f"ROT-{n:02d}" for n in range(20)]
    seed_skus(settings.database_url, skus)
    with event_tap(settings.amqp_url, exchange="inventory") as tap, \
            running_relay(settings, batch_size=50, rotate_after_rows=100, rotate_check_seconds=0.02) as relay:
        # When 2,000 changes are made while the relay publishes, in 8 waves that each fill a slot
        for _ in range(8):
            before = rotation(settings.database_url)["rotations"]
            change_stock(settings.database_url, skus, 250)
            wait_until(lambda before=before: rotation(settings.database_url)["rotations"] > before, timeout=30,
                       message="the outbox moved on to its next slot")
        wait_until(lambda: pending(settings.database_url) == 0, timeout=30, message="outbox drained")
        wait_until(lambda: rotation(settings.database_url)["truncations"] >= 3, timeout=15,
                   message="drained slots truncated")
        wait_until(lambda: only_the_current_slot_has_pages(settings.database_url), timeout=15,
                   message="every slot but the current one truncated")
        received = collect(settings.amqp_url, tap, expect=2_020)

    # Then every change arrived once and in order per SKU, although it crossed many slots
    assert len({m.message_id for m in received}) == 2_020
    assert_contiguous_in_order(received, expected_last=current_versions(settings.database_url))
    state = rotation(settings.database_url)
    assert state["rotations"] >= 8 and relay.rotations >= 8 and relay.truncations >= 3
    # And `conveyor relay status` tells an operator the same
    status = relay_status(settings)
    assert (status["outbox_slot"], status["outbox_rotations"], status["outbox_truncations"]) == (
        state["slot"], state["rotations"], state["truncations"])
    assert status["outbox_size_bytes"] >= sum(state["sizes"].values())


def test_a_slot_written_by_an_open_transaction_is_not_truncated_and_its_rows_are_published(settings):
    # Given a SKU, and a transaction that wrote a change into the current slot and stays open
    seed_skus(settings.database_url, ["STRADDLE"], on_hand=10)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM outbox")
        first_slot = rotation(settings.database_url)["slot"]
        straddler = psycopg.connect(settings.database_url)
        straddler.execute("UPDATE stock_levels SET on_hand = 11 WHERE sku = 'STRADDLE'")
        # When the outbox rotates away from that slot, and the relay's maintenance runs
        with conn.transaction():
            done = Outbox(conn).rotate(rotate_after=0)
        assert ("rotated", (first_slot + 1) % 3) in done
        with conn.transaction():
            conn.execute("INSERT INTO outbox (message_id, exchange, routing_key, payload) "
                         "VALUES (gen_random_uuid(), 'inventory', 'x', '{}')")  # a later writer
            conn.execute("DELETE FROM outbox")  # published by now
        with conn.transaction():
            busy = Outbox(conn).rotate(rotate_after=10_000)
        # Then the slot is left alone while the writer is open
        assert ("busy", first_slot) in busy
        # And once it commits, its row is there to publish, and only then is the slot truncated
        straddler.commit()
        straddler.close()
        assert conn.execute("SELECT slot FROM outbox").fetchall() == [(first_slot,)]
        with conn.transaction():
            assert Outbox(conn).rotate(rotate_after=10_000) == []  # not empty: kept
        conn.execute("DELETE FROM outbox")
        with conn.transaction():
            assert ("truncated", first_slot) in Outbox(conn).rotate(rotate_after=10_000)


def test_dead_outbox_rows_go_away_while_a_long_transaction_pins_the_xmin_horizon(settings):
    # Given a transaction that holds a snapshot and an xid for the whole test, so VACUUM
    # could reclaim no row deleted meanwhile
    skus = [f"PIN-{n:02d}" for n in range(10)]
    seed_skus(settings.database_url, skus)
    pin = psycopg.connect(settings.database_url)
    pin.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    pin.execute("SELECT pg_current_xact_id()")
    pin.execute("SELECT count(*) FROM tenants")
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                                "AND state = 'idle in transaction'").fetchone()[0] >= 1
        with event_tap(settings.amqp_url, exchange="inventory") as tap, \
                running_relay(settings, batch_size=100, rotate_after_rows=200, rotate_check_seconds=0.02):
            # When 3,000 changes are published and deleted from the outbox, in waves of 250 the
            # relay drains before the next (each wave fills a slot, whatever the relay's pace)
            for _ in range(12):
                change_stock(settings.database_url, skus, 250)
                wait_until(lambda: pending(settings.database_url) == 0, timeout=30, message="outbox drained")
            wait_until(lambda: rotation(settings.database_url)["truncations"] >= 5, timeout=15,
                       message="slots truncated under a pinned xmin")
            received = collect(settings.amqp_url, tap, expect=3_010)
            # Then the slots writers left hold no pages at all: 3,000 deleted rows gone without VACUUM
            wait_until(lambda: only_the_current_slot_has_pages(settings.database_url), timeout=15,
                       message="every slot but the current one truncated")
        # And the partner has every change
        assert len({m.message_id for m in received}) == 3_010
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            still_pinned = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                                        "AND state = 'idle in transaction'").fetchone()[0]
        assert still_pinned >= 1
    finally:
        pin.rollback()
        pin.close()
