"""The security baseline on a real PostgreSQL and RabbitMQ: the roles of V005 (a worker login
cannot change the schema or read what it does not need, yet runs every worker end to end; a
reporting login sees one tenant and writes nothing), SQL injection through every message field
and CLI argument, and no secrets or personal data in the workers' logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from conveyor import devservices
from conveyor.workers import cli
from tests.corpus import Dead, Done, injection_cases
from tests.support.corpus import expected_dead_letters, expected_deliveries, publish_cases, seed_world
from tests.support.lifecycle import authorized, created, delivered, dispatched, send, statuses
from tests.support.security import login_role, schema_snapshot, url_as
from tests.support.workers import (
    ROOT,
    consumers_on,
    event_tap,
    order_body,
    publish,
    queue_depth,
    run_order,
    running_workers,
    scalar,
    set_stock,
    settings_for,
    stop_process,
    take_all,
    wait_until,
)

ALL_WORKERS = ["orders", "payments", "shipments", "relay", "expirer"]
DENIED = "42501"  # insufficient_privilege


@pytest.fixture(scope="module")
def worker_login(admin_database_url, migrated_template) -> Iterator[tuple[str, str]]:
    with login_role(admin_database_url, "conveyor_worker") as login:
        yield login


@pytest.fixture(scope="module")
def reader_login(admin_database_url, migrated_template) -> Iterator[tuple[str, str]]:
    with login_role(admin_database_url, "conveyor_readonly") as login:
        yield login


@pytest.fixture(scope="module")
def shared_database(services, migrated_template) -> Iterator[str]:
    """One database for the checks that change nothing (every statement is refused)."""
    with devservices.fresh_database(services, template=migrated_template) as url:
        yield url


def refused(url: str, statement: str) -> str | None:
    """Run one statement in its own transaction; the SQLSTATE it failed with, or None."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as error:
            return error.sqlstate
    return None


# --- the worker role ----------------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "CREATE TABLE stolen (id int)",
    "DROP TABLE orders",
    "DROP TABLE inbox CASCADE",
    "ALTER TABLE orders ADD COLUMN note text",
    "ALTER TABLE stock_movements DROP CONSTRAINT stock_reserved_within_on_hand",
    "ALTER TABLE stock_movements DISABLE TRIGGER stock_movements_changes",
    "ALTER VIEW stock_levels RENAME TO stolen",
    "ALTER TABLE orders DISABLE ROW LEVEL SECURITY",
    "CREATE INDEX stolen_idx ON orders (customer_id)",
    "TRUNCATE orders",
    "TRUNCATE outbox",
    "TRUNCATE outbox_slot_0",
    "UPDATE outbox_rotation SET slot = 1",
    "CREATE FUNCTION stolen() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "DROP FUNCTION conveyor_stock_levels_write() CASCADE",
    "CREATE POLICY stolen ON orders USING (true)",
    "CREATE SCHEMA stolen",
    "GRANT SELECT ON schema_history TO PUBLIC",
    "SELECT maintenance.conveyor_ensure_partition('orders.orders', '2031-01-01')",
    "DROP TABLE orders.orders_default",
    "ALTER TABLE orders.orders DETACH PARTITION orders.orders_default",
    "CREATE TABLE maintenance.stolen (id int)",
    "DELETE FROM maintenance.partition_sets",
    "DELETE FROM privacy.customer_keys",
    "UPDATE privacy.customer_keys SET key_id = 'x'",
    "SELECT * FROM privacy.order_customers",
], ids=lambda s: s.split(" (")[0][:48])
def test_the_worker_role_cannot_change_the_schema(shared_database, worker_login, statement):
    assert refused(url_as(shared_database, *worker_login), statement) == DENIED


@pytest.mark.parametrize("statement", [
    "SELECT * FROM schema_history",
    "SELECT * FROM audit.dlq_audit_runs",
    "SELECT * FROM audit.dlq_audit_messages",
    "SELECT * FROM audit.privacy_requests",
    "SELECT * FROM archive.months",
    "SELECT * FROM products",
    "SELECT * FROM payments",
    "SELECT * FROM shipments",
    "SELECT * FROM order_lines",
    "SELECT * FROM order_transitions",
    "SELECT * FROM orders_default",
    "DELETE FROM orders",
    "DELETE FROM inbox",
    "DELETE FROM stock_levels",
    "UPDATE payments SET outcome = 'authorized'",
    "UPDATE stock_movements SET cause = 'x'",
    "DELETE FROM stock_movements",
    "UPDATE stock_levels SET on_hand = 0",
    "INSERT INTO stock_items (tenant_id, sku) VALUES ('default', 'x')",
    "INSERT INTO products (tenant_id, sku) VALUES ('default', 'x')",
    "INSERT INTO stock_levels (tenant_id, sku, on_hand) VALUES ('default', 'x', 1)",
], ids=lambda s: s[:48])
def test_the_worker_role_cannot_touch_what_it_does_not_need(shared_database, worker_login, statement):
    assert refused(url_as(shared_database, *worker_login), statement) == DENIED


# The worker's privileges per table (V005, V013), and a decision for every table: a new table
# fails here until its migration grants (or deliberately does not grant) what the worker needs.
WORKER_PRIVILEGES = {
    "inventory.tenants": {"INSERT", "SELECT (tenant_id)", "SELECT (base_currency)", "SELECT (prices_include_tax)"},
    "inventory.products": {"SELECT (tenant_id)", "SELECT (sku)", "SELECT (tax_category)"},  # a line's tax category
    "inventory.stock_levels": {"SELECT"},
    "inventory.catalogue_words": set(),  # V018: the catalogue is the operator's (conveyor catalog)
    "inventory.stock_items": {"SELECT"}, "inventory.stock_movements": {"SELECT", "INSERT"},
    "orders.order_registry": {"INSERT", "SELECT (order_id)", "SELECT (created_at)"},
    "orders.orders": {"SELECT", "INSERT", "UPDATE"}, "orders.order_lines": {"INSERT"},
    "inventory.reservations": {"SELECT", "INSERT", "UPDATE"}, "messaging.inbox": {"SELECT", "INSERT"},
    "messaging.outbox": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "orders.payments": {"INSERT", "SELECT (payment_id)"},
    "orders.shipments": {"INSERT", "SELECT (event)", "SELECT (shipment_id)"},
    "orders.order_transitions": {"INSERT"}, "orders.daily_summaries": set(),
    "messaging.relay_lease": {"SELECT", "UPDATE"},
    "public.schema_history": {"SELECT (version)", "SELECT (filename)", "SELECT (checksum)", "SELECT (applied_at)"},
    "public.schema_history_steps": set(),  # the runner's progress: nothing of it is the workers'
    "audit.dlq_audit_runs": set(), "audit.dlq_audit_messages": set(), "audit.privacy_requests": set(),
    "messaging.outbox_rotation": {"SELECT"}, "maintenance.periodic_runs": {"SELECT", "UPDATE"},
    "maintenance.partition_sets": {"SELECT"}, "archive.months": set(),
    "privacy.customer_keys": {"INSERT", "SELECT (tenant_id)", "SELECT (customer_id)", "SELECT (key_id)",
                              "SELECT (wrapped_key)"},
    "privacy.order_customers": {"INSERT"},
    "orders.currencies": set(), "orders.fx_rates": {"SELECT"}, "inventory.tax_rules": {"SELECT"},  # V019
}
CONVEYOR_SCHEMAS = "ARRAY['public', 'inventory', 'orders', 'messaging', 'privacy', 'audit', 'archive', 'maintenance']"
GRANTS = f"""
SELECT c.relnamespace::regnamespace || '.' || c.relname, t.privilege_type FROM pg_class c, aclexplode(c.relacl) t
WHERE c.relnamespace::regnamespace::text = ANY({CONVEYOR_SCHEMAS}) AND t.grantee = 'conveyor_worker'::regrole
UNION ALL
SELECT c.relnamespace::regnamespace || '.' || c.relname, t.privilege_type || ' (' || a.attname || ')'
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid, aclexplode(a.attacl) t
WHERE c.relnamespace::regnamespace::text = ANY({CONVEYOR_SCHEMAS}) AND t.grantee = 'conveyor_worker'::regrole
"""
RELATIONS = f"""
SELECT c.relnamespace::regnamespace || '.' || c.relname FROM pg_class c
WHERE c.relnamespace::regnamespace::text = ANY({CONVEYOR_SCHEMAS}) AND relkind IN ('r', 'p', 'v') AND NOT relispartition
"""
OWNERS = f"""
SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class
WHERE relnamespace::regnamespace::text = ANY({CONVEYOR_SCHEMAS}) AND relkind IN ('r', 'p', 'S', 'v')
"""


def test_every_table_has_a_decided_set_of_worker_privileges(shared_database):
    with psycopg.connect(shared_database) as conn:
        tables = {name for (name,) in conn.execute(RELATIONS)}
        granted = {table: set() for table in tables}
        for table, privilege in conn.execute(GRANTS):
            granted.setdefault(table, set()).add(privilege)
        owners = {owner for (owner,) in conn.execute(OWNERS)}
    sequences = {t: p for t, p in granted.items() if t not in tables}
    assert {t: p for t, p in granted.items() if t in tables} == {
        table: WORKER_PRIVILEGES.get(table, {"undecided"}) for table in tables}
    assert sequences == {name: {"USAGE"} for name in (
        "messaging.outbox_id_seq", "inventory.stock_movements_id_seq", "orders.order_transitions_id_seq")}
    assert owners == {"conveyor_owner"}


def test_the_worker_role_runs_every_worker_end_to_end(database_url, fresh_amqp_url, worker_login):
    # Given stock (set by an operator) and every worker logged in with the worker role only
    set_stock(database_url, "A", 5)
    settings = settings_for(url_as(database_url, *worker_login), fresh_amqp_url, reservation_ttl=5)
    shipped, rejected, unpaid = (order_body(("A", n)) for n in (2, 99, 1))
    with event_tap(fresh_amqp_url) as tap, running_workers(settings, ALL_WORKERS):
        # When orders are placed, one of them paid, dispatched and delivered, one never paid
        send(fresh_amqp_url, [created(shipped), created(rejected), created(unpaid), authorized(shipped)])
        wait_until(lambda: statuses(database_url).get(shipped["order_id"]) == "PAID", message="order paid")
        send(fresh_amqp_url, [dispatched(shipped), delivered(shipped)])
        expected = {shipped["order_id"]: "DELIVERED", rejected["order_id"]: "REJECTED",
                    unpaid["order_id"]: "EXPIRED"}
        wait_until(lambda: statuses(database_url) == expected, timeout=30, message="every order final")
        events = take_all(fresh_amqp_url, tap, expect=7)

    # Then each worker did its part: nothing dead-lettered, every event relayed, stock settled
    assert sorted(m.routing_key for m, _, _ in events) == sorted([
        "order.reserved", "order.reserved", "order.rejected", "order.paid", "order.shipped",
        "order.delivered", "order.expired"])
    for queue in ("conveyor.orders.dlq", "conveyor.payments.dlq", "conveyor.shipments.dlq"):
        assert queue_depth(fresh_amqp_url, queue) == 0
    assert scalar(database_url, "SELECT (on_hand, reserved)::text FROM stock_levels WHERE sku = 'A'") == "(3,0)"


# --- the reporting role and row-level security ---------------------------------------------------

@pytest.fixture
def two_tenants(database_url) -> dict[str, str]:
    """An order (with lines, reservations, a payment) for tenants a and b; returns their ids."""
    orders = {}
    for tenant in ("a", "b"):
        set_stock(database_url, f"SKU-{tenant}", 5, tenant=tenant)
        body = order_body((f"SKU-{tenant}", 1), tenant_id=tenant, price="4.00")
        run_order(database_url, body)
        with psycopg.connect(database_url) as conn:
            conn.execute("INSERT INTO payments (payment_id, order_id, outcome) VALUES (%s, %s, 'authorized')",
                         (f"pay-{tenant}", body["order_id"]))
        orders[tenant] = body["order_id"]
    return orders


TENANT_QUERIES = {
    "orders": "SELECT tenant_id FROM orders",
    "order_registry": "SELECT tenant_id FROM order_registry",
    "order_lines": "SELECT r.tenant_id FROM order_lines l JOIN order_registry r USING (order_id)",
    "reservations": "SELECT tenant_id FROM reservations",
    "payments": "SELECT right(payment_id, 1) FROM payments",
    "stock_levels": "SELECT tenant_id FROM stock_levels",
    "stock_movements": "SELECT tenant_id FROM stock_movements",
    "products": "SELECT tenant_id FROM products",
}


def rows_seen(url: str, tenant: str | None) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        if tenant is not None:
            conn.execute("SELECT set_config('conveyor.tenant', %s, false)", (tenant,))
        return {table: {r[0] for r in conn.execute(query)} for table, query in TENANT_QUERIES.items()}


def test_a_reader_sees_only_the_tenant_it_names(database_url, two_tenants, reader_login):
    reader = url_as(database_url, *reader_login)

    seen_by_a, seen_by_b, unnamed = rows_seen(reader, "a"), rows_seen(reader, "b"), rows_seen(reader, None)

    assert seen_by_a == {table: {"a"} for table in TENANT_QUERIES}
    assert seen_by_b == {table: {"b"} for table in TENANT_QUERIES}
    assert unnamed == {table: set() for table in TENANT_QUERIES}


def test_row_level_security_does_not_hide_rows_from_the_worker_or_the_owner(database_url, two_tenants,
                                                                           worker_login, admin_database_url):
    with login_role(admin_database_url, "conveyor_owner") as owner_login:
        owner = url_as(database_url, *owner_login)
        assert rows_seen(owner, "a") == {table: {"a", "b"} for table in TENANT_QUERIES}
    with psycopg.connect(url_as(database_url, *worker_login)) as conn:
        conn.execute("SET conveyor.tenant = 'a'")
        assert {r[0] for r in conn.execute("SELECT tenant_id FROM orders")} == {"a", "b"}


@pytest.mark.parametrize("statement", [
    "INSERT INTO tenants (tenant_id, name) VALUES ('c', 'c')",
    "UPDATE orders SET status = 'CANCELLED'",
    "DELETE FROM reservations",
    "UPDATE stock_levels SET on_hand = 0",
    "TRUNCATE payments",
    "CREATE TABLE report (id int)",
    "SELECT * FROM messaging.inbox",
    "SELECT * FROM messaging.outbox",
    "SELECT * FROM schema_history",
    "SELECT * FROM audit.dlq_audit_runs",
    "SELECT * FROM privacy.order_customers",
    "SELECT * FROM privacy.customer_keys",
], ids=lambda s: s[:40])
def test_a_reader_cannot_write_or_read_operational_tables(shared_database, reader_login, statement):
    assert refused(url_as(shared_database, *reader_login), f"SET conveyor.tenant = 'a'; {statement}") == DENIED


# --- SQL injection --------------------------------------------------------------------------------

def test_sql_injection_through_every_message_field_leaves_the_tables_intact(database_url, fresh_amqp_url,
                                                                           worker_login):
    # Given the corpus's injection cases (every field of every consumed type, the message id)
    cases = injection_cases()
    seed_world(database_url, cases)
    before = schema_snapshot(database_url)
    settings = settings_for(url_as(database_url, *worker_login), fresh_amqp_url, lock_timeout_ms=2_000)
    dead = expected_dead_letters(cases)
    deliveries = dict(expected_deliveries(cases, max_attempts=settings.max_attempts))

    # When they go through every worker, logged in as the worker role
    with running_workers(settings, ALL_WORKERS) as supervisor:
        publish_cases(fresh_amqp_url, cases)
        wait_until(lambda: {p.spec.name: p.stats.processed for p in supervisor.processors} == deliveries
                   and all(queue_depth(fresh_amqp_url, q) == n for q, n in dead.items()),
                   timeout=30, message="every injection case handled")

    # Then every table, column, trigger, policy and function is still there, the catalogue is
    # untouched, free text is stored verbatim and constrained fields refused the payload
    assert schema_snapshot(database_url) == before
    with psycopg.connect(database_url) as conn:
        for case in cases:
            if isinstance(case.expect, Done):
                table, column, value = case.stored
                query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(sql.Identifier(table),
                                                                               sql.Identifier(column))
                assert conn.execute(query, (value,)).fetchone()[0] == 1, case.name
    assert all(isinstance(c.expect, Done) or c.expect == Dead("schema_violation") for c in cases)


def run_cli(monkeypatch, capsys, database_url: str, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:  # argparse refuses a malformed argument
        code = exit_.code
    return code, capsys.readouterr().out


CLI_PAYLOADS = ["'; DROP TABLE stock_levels; --", "x' OR '1'='1", "default'; TRUNCATE orders; --"]


@pytest.mark.parametrize("payload", CLI_PAYLOADS)
def test_sql_injection_through_cli_arguments_is_stored_verbatim(database_url, monkeypatch, capsys, payload):
    # Given a catalogue (logged in with full rights: an injection would run)
    set_stock(database_url, "A", 5)
    run_order(database_url, order_body(("A", 1)))
    before = schema_snapshot(database_url)

    # When the payload is the SKU and the tenant of `stock set` and `stock show`, and the order id
    set_sku = run_cli(monkeypatch, capsys, database_url, "stock", "set", payload, "3", "--json")
    set_tenant = run_cli(monkeypatch, capsys, database_url, "stock", "set", "B", "4", "--tenant", payload[:64])
    shown = run_cli(monkeypatch, capsys, database_url, "stock", "show", payload, "--json")
    shown_tenant = run_cli(monkeypatch, capsys, database_url, "stock", "show", "B", "--tenant", payload[:64],
                           "--json")
    missing = run_cli(monkeypatch, capsys, database_url, "stock", "show", "A", "--tenant", payload[:64])
    order = run_cli(monkeypatch, capsys, database_url, "order", "show", payload)

    # Then the values are data: stored and found verbatim, the order id refused as malformed,
    # and the schema and the rows that were there are intact
    assert (set_sku[0], set_tenant[0], shown[0], shown_tenant[0], missing[0], order[0]) == (0, 0, 0, 0, 4, 2)
    assert json.loads(shown[1])["sku"] == payload
    assert json.loads(shown_tenant[1])["tenant_id"] == payload[:64]
    after = schema_snapshot(database_url)
    assert after[0] == before[0]
    assert scalar(database_url, "SELECT count(*) FROM orders") == 1
    assert scalar(database_url, "SELECT count(*) FROM stock_levels") == 3
    assert scalar(database_url, "SELECT count(*) FROM tenants WHERE tenant_id = %s", (payload[:64],)) == 1


# --- logs -------------------------------------------------------------------------------------------

def test_worker_logs_hold_no_database_password_and_no_customer_id(database_url, fresh_amqp_url, worker_login,
                                                                  tmp_path):
    # Given a worker process whose database URL carries a password, logging everything
    customer = f"customer-{uuid.uuid4().hex}"
    settings = settings_for(url_as(database_url, *worker_login), fresh_amqp_url)
    set_stock(database_url, "A", 5)
    log_path = tmp_path / "worker.log"
    env = {**os.environ, "CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": fresh_amqp_url,
           "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "DEBUG", "CONVEYOR_RETRY_DELAYS": "1"}
    with open(log_path, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "conveyor", "run", "orders", "relay"], env=env,
                                   cwd=ROOT, stdout=out, stderr=out)
    try:
        wait_until(lambda: consumers_on(fresh_amqp_url, "conveyor.orders") == 1, timeout=30,
                   message="worker consuming")
        # When orders with that customer id arrive: one reserved, one refused by the schema,
        # one with a control character in the customer id, one not even JSON
        good = order_body(("A", 1))
        good["customer_id"] = customer
        bad = {**good, "order_id": str(uuid.uuid4()), "currency": "eur"}
        nul = {**good, "order_id": str(uuid.uuid4()), "customer_id": customer + "\u0000"}
        publish(fresh_amqp_url, [(json.dumps(b).encode(), {}) for b in (good, bad, nul)]
                + [(customer.encode(), {})])
        wait_until(lambda: queue_depth(fresh_amqp_url, "conveyor.orders.dlq") == 3
                   and scalar(database_url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
                   and scalar(database_url, "SELECT count(*) FROM orders") == 1, timeout=30,
                   message="worker handled every message")
    finally:
        assert stop_process(process) == 0

    # Then the log (the process's whole output) tells the story without the password or the customer
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "message_processed" in log and "message_failed" in log
    assert worker_login[1] not in log
    assert customer not in log


def test_a_worker_login_can_tell_whether_the_schema_is_migrated(shared_database, worker_login):
    # Safe start runs as the worker: it reads the applied versions (and nothing else there)
    from conveyor.db.migrate import check_schema

    result = check_schema(url_as(shared_database, *worker_login))
    assert result.ready and not result.ahead


def test_connection_errors_in_logs_hold_no_password(fresh_amqp_url, tmp_path):
    # Given workers whose database does not answer, with a password in its URL
    password = f"pw-{uuid.uuid4().hex}"
    env = {**os.environ, "CONVEYOR_DATABASE_URL": f"postgresql://conveyor:{password}@127.0.0.1:1/conveyor",
           "CONVEYOR_AMQP_URL": fresh_amqp_url, "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "DEBUG",
           "CONVEYOR_SCHEMA_CHECK_INTERVAL": "0.5"}
    log_path = tmp_path / "unreachable.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "conveyor", "run", "orders", "relay"], env=env,
                                   cwd=ROOT, stdout=out, stderr=out)
    try:
        # When they keep failing to connect for a while
        # (safe start: the worker's first connection is the schema check, retried every interval)
        wait_until(lambda: log_path.read_text().count("schema_check_failed") >= 2, timeout=30,
                   message="repeated connection errors")
    finally:
        stop_process(process)

    # Then every error says what failed, none of them with the password
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "Connection refused" in log
    assert password not in log
