"""The examples of docs/clients.md, run as a shop or partner would run them (real processes),
against real services: a fresh database and vhost per test, Conveyor's workers running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.workers import ROOT, order_body, running_workers, scalar, set_stock, wait_until

EXAMPLES = Path(ROOT) / "docs" / "examples"


def example_env(settings) -> dict[str, str]:
    return {**os.environ, "CONVEYOR_AMQP_URL": settings.amqp_url, "CONVEYOR_DATABASE_URL": settings.database_url}


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def conveyor(settings) -> Iterator[object]:
    with running_workers(settings, ["orders", "relay"]):
        yield settings


def test_publish_order_example_gets_its_order_reserved(conveyor):
    set_stock(conveyor.database_url, "SKU-1", 5)

    done = run_example("publish_order.py", "SKU-1", "2", env=example_env(conveyor))

    assert done.returncode == 0, done.stderr
    fields = dict(part.split("=") for part in done.stdout.split())
    wait_until(lambda: scalar(conveyor.database_url, "SELECT status FROM orders WHERE order_id = %s",
                              (fields["order_id"],)) == "RESERVED" or None, message="order reserved")


def test_validate_example_gives_the_workers_reasons(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(order_body(("SKU-1", 1))))
    bad.write_text(json.dumps({**order_body(("SKU-1", 1)), "order_id": 7}))

    done = run_example("validate_order.py", str(good), str(bad))

    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"{good}: ok"
    assert done.stdout.splitlines()[1].startswith(f"{bad}: schema_violation: order_id:")


def test_in_memory_example_passes_as_a_shops_test():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(EXAMPLES / "in_memory_test.py")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_conveyor_service_example_passes_with_the_pytest_plugin(services):
    # The plugin finds the servers the suite uses (the environment's URLs when they answer).
    env = {**os.environ, "CONVEYOR_DATABASE_URL": services.database_url, "CONVEYOR_AMQP_URL": services.amqp_url}
    if services.management_url:  # this broker's own API (another broker may answer on its default port)
        env["CONVEYOR_MANAGEMENT_URL"] = services.management_url
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "conveyor.workers.kit.pytest_plugin", str(EXAMPLES / "conveyor_service_test.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.parametrize("example", ["partner_consumer_pika.py", "partner_consumer_aio_pika.py"])
def test_partner_consumer_example_sees_stock_changes_and_order_events(conveyor, example):
    # Given the partner's consumer bound and listening
    consumer = subprocess.Popen([sys.executable, str(EXAMPLES / example), "--max", "3", "--idle", "30"],
                                cwd=ROOT, env=example_env(conveyor), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        assert consumer.stdout is not None
        assert "ready" in json.loads(consumer.stdout.readline())

        # When stock is set and an order reserves some of it
        set_stock(conveyor.database_url, "SKU-1", 5)
        published = run_example("publish_order.py", "SKU-1", "2", env=example_env(conveyor))
        assert published.returncode == 0, published.stderr
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()

    # Then it saw both stock changes and the order's reservation, with the contract's properties
    assert consumer.returncode == 0, err
    seen = [json.loads(line) for line in out.splitlines()]
    assert sorted((m["exchange"], m["type"]) for m in seen) == [
        ("inventory", "stock.changed"), ("inventory", "stock.changed"), ("order-events", "order.reserved")]
    assert all(m["content_type"] == "application/json" and m["message_id"] for m in seen)
    stock = [m["body"] for m in seen if m["exchange"] == "inventory"]
    assert [(s["version"], s["on_hand"], s["reserved"]) for s in stock] == [(1, 5, 0), (2, 5, 2)]
    [reserved] = [m for m in seen if m["type"] == "order.reserved"]
    assert reserved["correlation_id"] == reserved["body"]["order_id"]
