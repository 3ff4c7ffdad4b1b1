"""workers/devservices.py against the session's real servers: databases and vhosts come and go."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from urllib.parse import unquote, urlsplit

import pika
import psycopg
import pytest

from conveyor import devservices


def database_names(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def vhost_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:])


def open_channel(amqp_url: str) -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    return connection, connection.channel()


def publish(amqp_url: str, queue: str, body: bytes) -> None:
    """Declare ``queue`` and publish ``body`` to it, confirmed by the broker."""
    connection, channel = open_channel(amqp_url)
    try:
        channel.confirm_delivery()
        channel.queue_declare(queue)
        channel.basic_publish("", queue, body, mandatory=True)
    finally:
        connection.close()


def get(amqp_url: str, queue: str) -> bytes | None:
    """Declare ``queue`` and take one message from it, if any."""
    connection, channel = open_channel(amqp_url)
    try:
        channel.queue_declare(queue)
        _, _, body = channel.basic_get(queue, auto_ack=True)
        return body
    finally:
        connection.close()


def round_trip(amqp_url: str, queue: str, body: bytes) -> bytes | None:
    publish(amqp_url, queue, body)
    return get(amqp_url, queue)


def assert_vhost_gone(amqp_url: str) -> None:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError, match=f"vhost {vhost_of(amqp_url)} not found"):
        pika.BlockingConnection(pika.URLParameters(amqp_url)).close()


# --------------------------------------------------------------------------- databases


def test_a_fresh_database_exists_inside_the_block_and_is_dropped_after_even_if_still_in_use(services):
    before = database_names(services.database_url)
    with devservices.fresh_database(services, prefix="conveyor_dstest") as url:
        name = devservices.database_name(url)
        assert name.startswith("conveyor_dstest_") and name not in before
        assert name in database_names(services.database_url)
        lingering = psycopg.connect(url)  # left open on purpose: the drop must force it
        lingering.execute("CREATE TABLE t (x int)")
        lingering.commit()
    try:
        assert name not in database_names(services.database_url)
        with pytest.raises(psycopg.OperationalError):
            lingering.execute("SELECT 1")  # its backend was terminated by the forced drop
    finally:
        lingering.close()


def test_a_database_cloned_from_a_sealed_template_has_its_rows_and_lives_on_its_own(services):
    with devservices.fresh_database(services, prefix="conveyor_dstmpl") as template_url:
        with psycopg.connect(template_url) as conn:
            conn.execute("CREATE TABLE stock (sku text PRIMARY KEY, qty int NOT NULL)")
            conn.execute("INSERT INTO stock VALUES ('A', 10), ('B', 5)")
        template = devservices.database_name(template_url)
        devservices.seal_template(services, template)

        started = time.monotonic()
        first = devservices.create_database_from_template(services, template)
        second = devservices.create_database_from_template(services, template)
        clone_seconds = (time.monotonic() - started) / 2
        try:
            with psycopg.connect(first) as conn:
                assert conn.execute("SELECT sku, qty FROM stock ORDER BY sku").fetchall() == [("A", 10), ("B", 5)]
                conn.execute("UPDATE stock SET qty = 0")
            with psycopg.connect(second) as conn:
                assert conn.execute("SELECT sum(qty) FROM stock").fetchone() == (15,)
            with psycopg.connect(services.database_url) as conn:
                assert conn.execute(
                    "SELECT datallowconn FROM pg_database WHERE datname = %s", (template,)
                ).fetchone() == (False,)
        finally:
            devservices.drop_database(services, first)
            devservices.drop_database(services, second)
        names = database_names(services.database_url)
        assert devservices.database_name(first) not in names and devservices.database_name(second) not in names
        print(f"clone from template: {clone_seconds * 1000:.0f} ms")
    assert template not in database_names(services.database_url)


def test_the_database_url_fixture_is_a_migrated_clone_of_its_own(request, services):
    pytest.importorskip("conveyor.db.migrate")
    template = request.getfixturevalue("migrated_template")
    url = request.getfixturevalue("database_url")
    assert devservices.database_name(url) != template
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_history").fetchone()[0] >= 1


# --------------------------------------------------------------------------- vhosts


def test_a_fresh_vhost_carries_messages_and_is_deleted_after(services):
    with devservices.fresh_vhost(services, prefix="conveyor-dstest") as url:
        assert vhost_of(url).startswith("conveyor-dstest-")
        assert round_trip(url, "probe", b"hello") == b"hello"
    assert_vhost_gone(url)
    pika.BlockingConnection(pika.URLParameters(services.amqp_url)).close()  # the default vhost still answers


def test_two_fresh_vhosts_are_isolated(services):
    with devservices.fresh_vhost(services) as one, devservices.fresh_vhost(services) as two:
        assert vhost_of(one) != vhost_of(two)
        publish(one, "jobs", b"for one")

        connection, channel = open_channel(two)
        try:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
                channel.queue_declare("jobs", passive=True)
            assert missing.value.reply_code == 404
        finally:
            connection.close()

        assert get(two, "jobs") is None  # two's own, new "jobs" queue is empty
        assert get(one, "jobs") == b"for one"


def test_the_session_and_per_test_vhost_fixtures_are_distinct_working_vhosts(amqp_url, fresh_amqp_url):
    assert vhost_of(amqp_url) != vhost_of(fresh_amqp_url)
    assert round_trip(amqp_url, "shared", b"s") == b"s"
    assert round_trip(fresh_amqp_url, "mine", b"m") == b"m"


def test_vhosts_can_be_managed_with_rabbitmqctl_alone(services):
    if not services.rabbitmqctl:
        pytest.skip(f"no rabbitmqctl route for {services.source}")
    without_api = dataclasses.replace(services, management_url=None)
    started = time.monotonic()
    with devservices.fresh_vhost(without_api) as url:
        created = time.monotonic()
        assert round_trip(url, "via-ctl", b"ctl") == b"ctl"
        deleting = time.monotonic()
    print(f"rabbitmqctl: create {created - started:.2f} s, delete {time.monotonic() - deleting:.2f} s")
    assert_vhost_gone(url)


def test_without_any_route_to_create_vhosts_the_error_says_so(services):
    stranded = dataclasses.replace(services, management_url=None, rabbitmqctl=None, container_exec=None)
    with pytest.raises(devservices.DevServicesError, match="cannot create vhosts"):
        with devservices.fresh_vhost(stranded):
            pass


def test_vhost_urls_are_percent_encoded_and_keep_credentials_and_options():
    url = devservices.amqp_url_for_vhost("amqp://u:p%40ss@h:5673/%2F?heartbeat=5", "a/b c")
    assert url == "amqp://u:p%40ss@h:5673/a%2Fb%20c?heartbeat=5"
    assert pika.URLParameters(url).virtual_host == "a/b c"


# --------------------------------------------------------------------------- picking a source


def test_environment_urls_that_do_not_answer_are_skipped_quickly_with_the_reason(monkeypatch, services):
    dead_pg, dead_amqp = devservices._free_ports(2)
    monkeypatch.setenv(devservices.DATABASE_URL_ENV, f"postgresql://postgres@127.0.0.1:{dead_pg}/postgres")
    monkeypatch.setenv(devservices.AMQP_URL_ENV, f"amqp://guest:secret@127.0.0.1:{dead_amqp}/%2F")
    started = time.monotonic()
    found, why = devservices.environment_services()
    assert found is None
    dead_url = f"postgresql://postgres@127.0.0.1:{dead_pg}/postgres"
    assert why.startswith(f"{devservices.DATABASE_URL_ENV}={dead_url} is not usable")

    monkeypatch.setenv(devservices.DATABASE_URL_ENV, services.database_url)  # one that answers
    found, why = devservices.environment_services()
    assert found is None
    assert why.startswith(f"{devservices.AMQP_URL_ENV}=amqp://guest:***@127.0.0.1:{dead_amqp}/%2F is not usable")
    assert time.monotonic() - started < 3


def test_environment_urls_that_answer_are_used(monkeypatch, services):
    monkeypatch.setenv(devservices.DATABASE_URL_ENV, services.database_url)
    monkeypatch.setenv(devservices.AMQP_URL_ENV, services.amqp_url)
    found, why = devservices.environment_services()
    assert found is not None and found.source == "environment", why
    assert (found.database_url, found.amqp_url) == (services.database_url, services.amqp_url)


def test_unset_environment_urls_are_reported_by_name(monkeypatch):
    monkeypatch.delenv(devservices.DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(devservices.AMQP_URL_ENV, raising=False)
    assert devservices.environment_services() == (
        None, f"{devservices.DATABASE_URL_ENV} and {devservices.AMQP_URL_ENV} not set"
    )


def test_a_vhost_created_on_another_broker_than_the_urls_is_refused_and_removed(services):
    if services.source != "local-binaries":
        pytest.skip("needs a second broker: the machine's, next to the throwaway one")
    # (resolution never picks it for the throwaway's port; the test forces the mismatch)
    machine_ctl = devservices._system_rabbitmqctl("amqp://guest:guest@127.0.0.1:5672/%2F")
    assert devservices._system_rabbitmqctl(services.amqp_url) is None  # another port: not the default node
    if machine_ctl is None or subprocess.run([*machine_ctl, "-q", "status"], capture_output=True).returncode:
        pytest.skip("no machine broker that rabbitmqctl reaches")
    # The URL points at the throwaway broker, rabbitmqctl at the machine's default node.
    mismatched = dataclasses.replace(services, management_url=None, rabbitmqctl=machine_ctl, rabbitmqctl_env=())
    with pytest.raises(devservices.DevServicesError, match="created vhost 'conveyor-mismatch-[0-9a-f]+', but"):
        devservices.create_vhost(mismatched, prefix="conveyor-mismatch")
    listed = subprocess.run([*machine_ctl, "-q", "list_vhosts"], capture_output=True, text=True, check=True).stdout
    assert "conveyor-mismatch-" not in listed
