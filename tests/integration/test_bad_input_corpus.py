"""The bad-input corpus (tests/corpus) through the real workers.

Every case is published in one go to one set of running workers (orders, payments, shipments,
relay and expirer, in-process), then checked one test per case: its dead letter (error code,
body byte for byte, attempts, never redelivered), its business outcome and event, or that
nothing changed. Afterwards the workers still do valid work, handled each delivery exactly
once (no crash loop, no reconnect) and the stock reconciles."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pika
import psycopg
import pytest
from psycopg import sql

from conveyor import devservices
from tests.corpus import CASES, CONTROLS, MAX_BYTES, Case, Dead, Done, NoOp, Unroutable
from tests.corpus.cases import header_field, valid
from tests.support.corpus import (
    Outcome,
    RawHeaderProperties,
    expected_dead_letters,
    expected_deliveries,
    fingerprints,
    publish_cases,
    seed_world,
)
from tests.support.workers import (
    event_tap,
    order_body,
    publish_orders,
    queue_depth,
    running_workers,
    scalar,
    set_stock,
    settings_for,
    take_all,
    wait_until,
)

WORKERS = ["orders", "payments", "shipments", "relay", "expirer"]
ALL = CASES + CONTROLS


@dataclass
class Run:
    database_url: str
    max_attempts: int
    outcome: Outcome


@pytest.fixture(scope="module")
def corpus(services, migrated_template) -> Iterator[Run]:
    with devservices.fresh_database(services, template=migrated_template) as database_url, \
         devservices.fresh_vhost(services) as amqp_url:
        # Given the world the cases expect, and every worker running
        settings = settings_for(database_url, amqp_url, lock_timeout_ms=2_000, log_level="ERROR")
        assert settings.max_message_bytes == MAX_BYTES  # the size cases are built around it
        seed_world(database_url, ALL)
        outcome = Outcome(before=fingerprints(database_url, ALL))
        dead_letters = expected_dead_letters(ALL)
        outcome.expected_deliveries = dict(expected_deliveries(ALL, max_attempts=settings.max_attempts))
        with event_tap(amqp_url) as tap:
            with running_workers(settings, WORKERS) as supervisor:
                # When every case is published, then valid work for each worker
                outcome.unroutable = publish_cases(amqp_url, CASES)
                publish_cases(amqp_url, CONTROLS)

                def settled() -> bool:
                    handled = {p.spec.name: p.stats.processed for p in supervisor.processors}
                    return (handled == outcome.expected_deliveries
                            and all(queue_depth(amqp_url, q) == n for q, n in dead_letters.items())
                            and scalar(database_url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0)

                wait_until(settled, timeout=60, interval=0.25, message="every case settled")
                outcome.deliveries = {p.spec.name: p.stats.processed for p in supervisor.processors}
                outcome.outcomes = {p.spec.name: dict(p.stats.outcomes) for p in supervisor.processors}
                outcome.generations = {p.spec.name: p.consumer.generation for p in supervisor.processors}
            for queue, count in dead_letters.items():
                outcome.add_dead(take_all(amqp_url, queue, expect=count, timeout=10))
            done = sum(isinstance(c.expect, Done) for c in ALL)
            outcome.add_events(take_all(amqp_url, tap, expect=done, timeout=10))
        outcome.after = fingerprints(database_url, ALL)
        yield Run(database_url, settings.max_attempts, outcome)


# --- one test per case --------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_gets_its_disposition(corpus: Run, case: Case) -> None:
    CHECKS[type(case.expect)](corpus, case)


@pytest.mark.parametrize("case", CONTROLS, ids=lambda c: c.name)
def test_valid_work_published_after_the_corpus_is_done(corpus: Run, case: Case) -> None:
    check_done(corpus, case)


def check_dead(run: Run, case: Case) -> None:
    [(_, properties, body)] = run.outcome.dead.get(case.name, [])
    headers = properties.headers
    assert headers["x-conveyor-error-code"] == case.expect.code, headers["x-conveyor-error-message"]
    assert body == case.body
    assert headers["x-conveyor-attempts"] == (run.max_attempts if case.expect.retried else 1)
    assert headers["x-conveyor-original-queue"] == case.queue
    assert headers.get("x-delivery-count", 0) == 0, "redelivered: a worker crashed on it"
    assert_untouched(run, case)
    if isinstance(case.message_id, str):
        assert count(run, "inbox", "message_id", case.message_id) == 0
    for table, column in (("payments", "payment_id"), ("shipments", "shipment_id")):
        value = _field(case.body, column)
        if _storable(value):
            assert count(run, table, column, value) == 0, f"{table} has a row for a dead letter"


def check_done(run: Run, case: Case) -> None:
    assert case.name not in run.outcome.dead
    assert scalar(run.database_url, "SELECT status FROM orders WHERE order_id = %s",
                  (case.order_id,)) == case.expect.status
    assert [event[0] for event in run.outcome.events.get(case.order_id, [])] == [case.expect.event]
    assert count(run, "inbox", "message_id", case.message_id) == 1
    if case.stored:
        table, column, value = case.stored
        assert count(run, table, column, value) == 1, f"{value!r} not kept verbatim in {table}.{column}"


def check_noop(run: Run, case: Case) -> None:
    assert case.name not in run.outcome.dead
    assert_untouched(run, case)
    assert count(run, "inbox", "message_id", case.message_id) == 1


def check_unroutable(run: Run, case: Case) -> None:
    assert case.name in run.outcome.unroutable
    assert case.name not in run.outcome.dead


CHECKS = {Dead: check_dead, Done: check_done, NoOp: check_noop, Unroutable: check_unroutable}


def assert_untouched(run: Run, case: Case) -> None:
    assert run.outcome.after[case.name] == run.outcome.before[case.name]
    assert run.outcome.events.get(case.order_id, []) == []
    if case.seed is None and case.routing_key == "order.created":
        assert count(run, "order_registry", "order_id", case.order_id) == 0


def count(run: Run, table: str, column: str, value: object) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(column))
    with psycopg.connect(run.database_url) as conn:
        return conn.execute(query, (value,)).fetchone()[0]


def _storable(value: object) -> bool:
    """A string PostgreSQL could hold at all (no lone surrogate, no NUL)."""
    return isinstance(value, str) and "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def _field(body: bytes, name: str) -> object:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document.get(name) if isinstance(document, dict) else None


# --- the workers themselves ----------------------------------------------------------------------

def test_each_delivery_was_handled_exactly_once(corpus: Run) -> None:
    # A crash or a lost settlement would show as a redelivery: one more than planned.
    assert corpus.outcome.deliveries == corpus.outcome.expected_deliveries, corpus.outcome.outcomes


def test_no_worker_reconnected(corpus: Run) -> None:
    assert set(corpus.outcome.generations.values()) == {1}


def test_every_dead_letter_belongs_to_a_case(corpus: Run) -> None:
    assert corpus.outcome.stray_dead == []


def test_stock_reservations_and_ledger_still_reconcile(corpus: Run) -> None:
    from conveyor.db.reconcile import run_checks

    with psycopg.connect(corpus.database_url) as conn:
        assert {name: rows for name, rows in run_checks(conn).items() if rows} == {}


def test_a_header_pika_cannot_decode_is_dead_lettered_by_the_broker_and_the_worker_goes_on(
        database_url, fresh_amqp_url):
    # Given an order worker with a delivery limit of 3
    settings = settings_for(database_url, fresh_amqp_url, delivery_limit=3)
    set_stock(database_url, "A", 5)
    poison = json.dumps(valid("order.created", "3f1c6a52-6a0e-4a4f-8d8f-1c1e8a3a9b10")).encode()
    timestamp = header_field("x-when", b"T", struct.pack(">Q", 2**63))  # past year 9999
    with running_workers(settings, ["orders"]) as supervisor:
        # When a message arrives whose header pika fails to decode (the connection breaks on it)
        connection = pika.BlockingConnection(pika.URLParameters(fresh_amqp_url))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("orders", "order.created", poison, RawHeaderProperties(
            timestamp, message_id="poison", type="order.created", headers={"x-case": "poison"}), mandatory=True)
        connection.close()

        # Then the broker dead-letters it after the delivery limit (pika cannot read it there
        # either, so only its count is checked), and valid work goes on
        wait_until(lambda: queue_depth(fresh_amqp_url, "conveyor.orders.dlq") == 1, timeout=60,
                   message="dead-lettered by the broker")
        publish_orders(fresh_amqp_url, [order_body(("A", 1))])
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM orders") == 1, message="valid order")
        assert queue_depth(fresh_amqp_url, "conveyor.orders") == 0
        assert supervisor.processors[0].consumer.generation > 1  # it reconnected, it did not crash
