"""The suite's plugins and markers. Layers: ``unit/`` (pure logic and fakes, milliseconds),
``integration/`` (real PostgreSQL and RabbitMQ), ``chaos/`` (real processes under faults),
``corpus/`` (the bad-input cases); shared helpers live in ``tests/support/``."""

pytest_plugins = ("tests.support.services",)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "settings(**overrides): Settings fields for this test's `settings` fixture "
                   "(e.g. max_attempts=2); the fixture also declares the topology")
    config.addinivalue_line(
        "markers", "also_through_pgbouncer: tests using `settings` run a second time with the workers' "
                   "database URL through PgBouncer in transaction pooling mode (tests/support/services.py)")
