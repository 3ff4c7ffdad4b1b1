"""Service fixtures (a pytest plugin, listed in tests/conftest.py): one PostgreSQL + RabbitMQ per
session, isolated per use (``conveyor.devservices``), and the one ``settings`` fixture.

Nothing starts unless a test asks for one of these fixtures, so unit tests stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import devservices


@pytest.fixture(scope="session")
def services(pytestconfig: pytest.Config) -> Iterator[devservices.Services]:
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def log(line: str) -> None:  # past the capture, so every run's output says which servers it used
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)

    with devservices.provide_services(log=log) as found:
        yield found


@pytest.fixture(scope="session")
def amqp_url(services: devservices.Services) -> Iterator[str]:
    """A vhost shared by the whole session."""
    with devservices.fresh_vhost(services) as url:
        yield url


@pytest.fixture(scope="session")
def admin_database_url(services: devservices.Services) -> str:
    return services.database_url


@pytest.fixture(scope="session")
def migrated_template(services: devservices.Services) -> Iterator[str]:
    """Name of a migrated database, sealed against connections so it can be cloned."""
    from conveyor.db.migrate import migrate

    with devservices.fresh_database(services, prefix="conveyor_template") as url:
        migrate(url)
        name = devservices.database_name(url)
        devservices.seal_template(services, name)
        yield name


@pytest.fixture
def database_url(services: devservices.Services, migrated_template: str) -> Iterator[str]:
    """A migrated database of this test's own (a clone of the template), dropped afterwards."""
    with devservices.fresh_database(services, template=migrated_template) as url:
        yield url


@pytest.fixture
def fresh_amqp_url(services: devservices.Services) -> Iterator[str]:
    """A pristine vhost of this test's own, deleted afterwards."""
    with devservices.fresh_vhost(services) as url:
        yield url


@pytest.fixture(scope="session")
def pgbouncer(services: devservices.Services) -> Iterator[object]:
    """A PgBouncer (transaction pooling) in front of the session's PostgreSQL."""
    from conveyor.devservices.pgbouncer import PgBouncer

    with PgBouncer(services.database_url, pool_size=40) as bouncer:
        yield bouncer


@pytest.fixture
def database_pooler(request: pytest.FixtureRequest) -> str:
    """``direct``, or ``pgbouncer`` for the second run of a test marked ``also_through_pgbouncer``."""
    return getattr(request, "param", "direct")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``also_through_pgbouncer`` that uses ``settings`` runs twice: straight to
    PostgreSQL, then with the workers' CONVEYOR_DATABASE_URL through PgBouncer (LISTEN direct)."""
    if metafunc.definition.get_closest_marker("also_through_pgbouncer") and "settings" in metafunc.fixturenames:
        metafunc.parametrize("database_pooler", ["direct", "pgbouncer"], indirect=True)


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str, fresh_amqp_url: str, database_pooler: str):
    """Settings for this test's own database and vhost, with the topology declared.

    Overrides come from the test's ``@pytest.mark.settings(...)`` marker (or its module's
    ``pytestmark``), so a test says what differs from the defaults and nothing else."""
    from tests.support.workers import declare_topology, settings_for

    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs if marker else {})
    workers_url = database_url
    if database_pooler == "pgbouncer":
        workers_url = request.getfixturevalue("pgbouncer").url_for(database_url)
        overrides.update(listen_database_url=database_url)
    settings = settings_for(workers_url, fresh_amqp_url, **overrides)
    declare_topology(settings)
    return settings
