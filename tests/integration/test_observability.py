"""Metrics and probes of real `conveyor run` processes against real PostgreSQL and RabbitMQ
(issue 13): what a scrape shows after real traffic, the probes' verdicts before the
migrations ran and while the broker is out of reach, one endpoint for a `--processes` group,
a port already in use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import devservices
from conveyor.workers.observability.metrics import series_names
from tests.support.workers import (
    ROOT,
    declare_topology,
    order_body,
    publish,
    publish_orders,
    scalar,
    set_stock,
    stop_process,
    wait_until,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, *, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def samples(port: int) -> dict[tuple[str, tuple], float]:
    status, text = get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


def conveyor_run(database_url: str, amqp_url: str, port: int, *args: str, log_path=None,
                 **env: str) -> subprocess.Popen:
    environment = {**os.environ, "CONVEYOR_DATABASE_URL": database_url, "CONVEYOR_AMQP_URL": amqp_url,
                   "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_HTTP_PORT": str(port), "CONVEYOR_HTTP_HOST": "127.0.0.1",
                   "CONVEYOR_RETRY_DELAYS": "1", "CONVEYOR_BROKER_VIEW_INTERVAL": "0.5",
                   "CONVEYOR_SCHEMA_CHECK_INTERVAL": "0.3", **env}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "conveyor", "run", *args], env=environment, cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL)


def test_a_scrape_counts_what_the_workers_did(settings, tmp_path):
    # Given stock, a worker process with its relay, and 5 orders plus one body that is not JSON
    set_stock(settings.database_url, "A", 100)
    declare_topology(settings)
    port = free_port()
    worker = conveyor_run(settings.database_url, settings.amqp_url, port, "orders", "relay",
                          CONVEYOR_RECONCILE_INTERVAL="1", log_path=tmp_path / "worker.log")
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=30, message="ready")
        publish_orders(settings.amqp_url, [order_body(("A", 1)) for _ in range(5)])
        publish(settings.amqp_url, [(b"not json", {"message_id": "bad-1", "content_type": "application/json"})],
                routing_key="order.created")

        # When it has settled them all and the relay published the events
        def settled() -> dict | None:
            scraped = samples(port)
            done = (value(scraped, "conveyor_messages_total", worker="orders", queue="conveyor.orders",
                          outcome="reserved") == 5
                    and value(scraped, "conveyor_relay_published_total", stream="order-events") == 5
                    and value(scraped, "conveyor_queue_messages", queue="conveyor.orders.dlq") == 1
                    and value(scraped, "conveyor_reconcile_drift", check="levels_vs_ledger") is not None)
            return scraped if done else None
        scraped = wait_until(settled, timeout=30, message="the scrape shows the work")

        # Then the scrape has each figure, under the names the dashboard and the rules use
        assert value(scraped, "conveyor_messages_total", worker="orders", queue="conveyor.orders",
                     outcome="dead_letter") == 1
        assert value(scraped, "conveyor_dead_letters_total", queue="conveyor.orders", reason="invalid") == 1
        assert value(scraped, "conveyor_batch_size_count", worker="orders") >= 1
        assert value(scraped, "conveyor_batch_seconds_count", worker="orders") >= 1
        versions = scalar(settings.database_url, "SELECT count(*) FROM stock_movements")  # one message each
        wait_until(lambda: value(samples(port), "conveyor_relay_published_total", stream="inventory") == versions,
                   timeout=10, message="every stock change published")
        assert value(scraped, "conveyor_relay_leader") == 1
        assert value(scraped, "conveyor_relay_confirm_seconds_count") >= 1
        assert value(scraped, "conveyor_queue_consumers", queue="conveyor.orders") == 1
        assert value(scraped, "conveyor_queue_messages", queue="conveyor.orders.retry.1s") == 0
        assert value(scraped, "conveyor_ready") == 1
        assert value(scraped, "conveyor_schema_pending_migrations") == 0
        assert all(value(scraped, "conveyor_reconcile_drift", check=check) == 0 for check in (
            "reserved_vs_reservations", "levels_vs_ledger", "orders_vs_reservations", "orders_without_reservations"))
        wait_until(lambda: value(samples(port), "conveyor_outbox_pending", stream="order-events") == 0,
                   timeout=10, message="outbox drained, as the scrape sees it")
        assert value(scraped, "conveyor_db_pool_size", pool="conveyor-workers") >= 1
        exported = {name for name, _ in scraped if name.startswith("conveyor_")}
        assert exported <= series_names(), exported - series_names()
        assert get(port, "/healthz") == (200, get(port, "/healthz")[1])
        assert json.loads(get(port, "/healthz")[1])["status"] == "alive"
    finally:
        assert stop_process(worker) == 0


def test_before_the_migrations_it_is_alive_but_not_ready_and_says_what_is_missing(services, fresh_amqp_url):
    with devservices.fresh_database(services) as database_url:  # never migrated
        port = free_port()
        worker = conveyor_run(database_url, fresh_amqp_url, port, "orders")
        try:
            wait_until(lambda: get(port, "/readyz")[0] == 503 and "pending" in get(port, "/readyz")[1],
                       timeout=20, message="the probe answers")
            status, body = get(port, "/readyz")
            missing = json.loads(body)["missing"]
            assert "V001__create_inventory.sql" in missing["schema"] and "conveyor db migrate" in missing["schema"]
            assert get(port, "/healthz")[0] == 200
            assert value(samples(port), "conveyor_schema_pending_migrations") >= 11
        finally:
            assert stop_process(worker) == 0


def test_with_the_broker_out_of_reach_probes_and_scrapes_answer_at_once(settings):
    # Given a worker whose broker URL points at a port nothing listens on
    port, dead = free_port(), free_port()
    worker = conveyor_run(settings.database_url, f"amqp://guest:guest@127.0.0.1:{dead}/%2F", port, "orders")
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 503, timeout=20, message="the endpoint answers")
        time.sleep(2)
        # When it is scraped and probed
        started = time.monotonic()
        ready, body = get(port, "/readyz")
        alive, _ = get(port, "/healthz")
        scraped = samples(port)
        elapsed = time.monotonic() - started

        # Then everything answers at once: not ready (naming the broker), alive, the view stale
        assert elapsed < 1.0
        assert ready == 503 and "broker:orders" in json.loads(body)["missing"]
        assert alive == 200
        assert value(scraped, "conveyor_broker_view_age_seconds") >= 1
        assert value(scraped, "conveyor_ready") == 0
    finally:
        assert stop_process(worker) == 0


def test_a_group_serves_one_endpoint_for_every_child(settings):
    # Given two processes of the order worker behind one endpoint
    set_stock(settings.database_url, "A", 1_000)
    declare_topology(settings)
    port = free_port()
    parent = conveyor_run(settings.database_url, settings.amqp_url, port, "orders", "--processes", "2")
    try:
        wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=40, message="the group is ready")
        wait_until(lambda: value(samples(port), "conveyor_queue_consumers", queue="conveyor.orders") == 2,
                   timeout=10, message="the broker view sees both consumers")

        # When 40 orders are consumed by the two of them
        publish_orders(settings.amqp_url, [order_body(("A", 1)) for _ in range(40)])

        # Then the one scrape counts all of them
        wait_until(lambda: value(samples(port), "conveyor_messages_total", worker="orders",
                                 queue="conveyor.orders", outcome="reserved") == 40,
                   timeout=30, message="both children's counts summed")
        assert json.loads(get(port, "/healthz")[1])["status"] == "alive"
    finally:
        assert stop_process(parent) == 0


def test_a_port_in_use_is_a_start_up_error_naming_the_setting(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url,
               "CONVEYOR_HTTP_PORT": str(port), "CONVEYOR_HTTP_HOST": "127.0.0.1"}
        for extra in ([], ["--processes", "2"]):
            done = subprocess.run([sys.executable, "-m", "conveyor", "run", "orders", *extra], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 2, done.stderr
            assert "CONVEYOR_HTTP_PORT" in done.stderr and "in use" in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["http", "-1", "70000"])
def test_a_bad_port_setting_is_refused_at_start(settings, value):
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_HTTP_PORT": value}
    done = subprocess.run([sys.executable, "-m", "conveyor", "run", "orders"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "CONVEYOR_HTTP_PORT" in done.stderr
