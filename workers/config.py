"""Runtime configuration: every ``CONVEYOR_*`` environment variable, validated once at start-up.

A bad value stops start-up with one line naming the setting (``ConfigError``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/conveyor"
    # A direct connection (not through a transaction-pooling PgBouncer) for the relay's LISTEN;
    # unset: CONVEYOR_DATABASE_URL. Behind PgBouncer the relay still works without it, polling.
    listen_database_url: str | None = None
    # A replica for the read-only commands (order show, stock show, reconcile, exports); unset:
    # CONVEYOR_DATABASE_URL. It must be a standby: a primary there is refused (docs/deploy.md).
    database_read_url: str | None = None
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # Several brokers (the nodes of a RabbitMQ cluster), comma-separated URLs. When set it takes
    # precedence: CONVEYOR_AMQP_URL becomes the first of them (for the tools that use one URL),
    # and every connection of the workers tries them in turn (workers/runtime/amqp.py).
    amqp_urls: Annotated[tuple[str, ...], NoDecode] = ()
    # Members of each quorum queue Conveyor creates (x-quorum-initial-group-size); unset: the
    # broker's default (every node of the cluster in 3.10). Queues that exist are left as they
    # are (a different group size is refused by RabbitMQ); see docs/deploy.md, "RabbitMQ cluster".
    quorum_replicas: int | None = Field(default=None, ge=1, le=99)

    prefetch: int = Field(default=100, ge=1, le=10_000)
    batch_size: int = Field(default=20, ge=1, le=1_000)
    # 0: group commit (a batch is what queued up meanwhile; nothing waits for company).
    batch_window_ms: int = Field(default=0, ge=0, le=10_000)
    # Outbox rows the relay claims and publishes per transaction (docs/performance.md).
    relay_batch_size: int = Field(default=1_000, ge=1, le=10_000)
    # Outbox rows per slot before the relay moves writers on to the next one and truncates
    # the drained slots (V009): bounds the dead rows a claim walks, whatever VACUUM does.
    outbox_rotate_rows: int = Field(default=10_000, ge=100, le=10_000_000)

    # Broker-side retry tiers (seconds); attempt n waits retry_delays[min(n-1, last)].
    retry_delays: Annotated[tuple[int, ...], NoDecode] = (1, 5, 30)
    max_attempts: int = Field(default=5, ge=1, le=100)
    # In-process retries of a transient database error before going through the broker.
    local_retries: int = Field(default=3, ge=0, le=20)
    delivery_limit: int = Field(default=20, ge=1, le=1_000)

    # Messages per inbound work queue, applied by `conveyor topology declare` as a RabbitMQ
    # policy (overflow reject-publish: publishers with confirms get a nack); 0: no bound.
    # 1,000,000 ≈ 8 minutes of this 2-core machine's top rate, under 1 GB of order bodies.
    queue_max_length: int = Field(default=1_000_000, ge=0, le=100_000_000)
    # The broker's management API for the policy (default: the AMQP host, port 15672).
    management_url: str | None = None

    # Tenant fairness: orders/s per tenant across the group, "shop-a=200,*=1000" (empty: no
    # limit); orders past a tenant's rate are deferred, never dead-lettered (runtime/throttle.py).
    tenant_rate_limits: str = ""

    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=128 * 1024 * 1024)
    # Unknown fields in consumed messages: ignored, counted and logged (the tolerant reader,
    # docs/contracts.md) unless this is true, when they are refused (dead-lettered) as before.
    strict_contracts: bool = False
    heartbeat_seconds: int = Field(default=30, ge=0, le=600)
    blocked_connection_timeout: float = Field(default=60.0, gt=0)
    lock_timeout_ms: int = Field(default=2_000, ge=1)
    statement_timeout_ms: int = Field(default=30_000, ge=1)
    # Migrations (`conveyor db migrate`, docs/database.md): how long a migration waits for each
    # lock before it gives up and tries again later, and how many times. Keep the wait below
    # CONVEYOR_LOCK_TIMEOUT_MS: the workers' statements queue behind a migration's pending lock.
    migration_lock_timeout_ms: int = Field(default=500, ge=1, le=600_000)
    migration_lock_attempts: int = Field(default=10, ge=1, le=1_000)

    default_tenant: str = Field(default="default", min_length=1, max_length=64)
    # How long an order may stay RESERVED unpaid: "900", "900s", "15m", "1h".
    reservation_ttl: float = Field(default=15 * 60, gt=0)
    # Seconds between checks for tables whose planner statistics went stale (0: never; V008).
    analyze_interval: float = Field(default=5.0, ge=0, le=3600)
    # Seconds between checks while `conveyor run` waits for pending migrations (safe start).
    schema_check_interval: float = Field(default=5.0, gt=0, le=3600)

    # HTTP port of /metrics, /healthz and /readyz (unset: no endpoint; 0: an ephemeral port,
    # logged at start). With --processes N the parent serves the whole group on it.
    http_port: int | None = Field(default=None, ge=0, le=65_535)
    # Host the endpoint binds (all interfaces by default, for a container's probes).
    http_host: str = "0.0.0.0"
    # A loop that did not tick for this long makes /healthz fail (longer than a batch can take).
    liveness_timeout: float = Field(default=120.0, gt=0, le=3600)
    # Seconds between reads of the queues' figures from the broker (cached for scrapes).
    broker_view_interval: float = Field(default=5.0, gt=0, le=3600)
    # The periodic reconciliation (`conveyor reconcile`), run by one process at a time;
    # "0" turns it off. "300", "90s", "5m", "1h".
    reconcile_interval: float = Field(default=5 * 60, ge=0)

    # Data over time (docs/data-lifecycle.md). Durations: "90", "30s", "15m", "12h", "7d".
    # Seconds between maintenance passes (partitions ahead, retention, summaries); one process
    # of the group runs each pass. "0" turns the loop off (then cron `conveyor db maintain`).
    maintenance_interval: float = Field(default=15 * 60, ge=0)
    # Monthly partitions kept ahead of the current month (orders, transitions) ...
    partitions_ahead: int = Field(default=3, ge=1, le=36)
    # ... and days ahead covered by the inbox's weekly partitions.
    partitions_ahead_days: int = Field(default=7, ge=1, le=60)
    # Processed message ids are kept this long: longer than any redelivery or DLQ replay.
    inbox_retention: float = Field(default=7 * 86_400, ge=86_400)
    # The transition log (state changes) is kept this long; "0": as long as its order is hot.
    transitions_retention: float = Field(default=0, ge=0)
    # Stock ledger versions older than this that are not their SKU's level are removed; "0": kept.
    ledger_retention: float = Field(default=0, ge=0)
    # The DLQ console's audit trail (runs and their messages) is kept this long; "0": kept.
    dlq_audit_retention: float = Field(default=400 * 86_400, ge=0)
    # Customers' personal data of finished orders is purged this long after they finished; "0": kept.
    pii_retention: float = Field(default=90 * 86_400, ge=0)
    # Days of daily summaries each maintenance pass recomputes from the hot orders.
    summary_refresh_days: int = Field(default=7, ge=1, le=400)
    # Months of orders kept in the hot tables; older finished months go to the archive.
    hot_months: int = Field(default=6, ge=1, le=120)
    # Where `conveyor archive run` writes months (a directory, mounted storage).
    archive_dir: str = "archive"
    # The key file of customers' personal data (docs/privacy.md); unset: orders that carry
    # a `customer` object are dead-lettered with that reason.
    pii_key_file: str | None = None

    # -- Backups: pgBackRest (`conveyor backup ...`, docs/backup.md) ------------------------------
    # The stanza (pgBackRest's name for this cluster, archive_command's --stanza) and its
    # configuration file (unset: pgBackRest's default, /etc/pgbackrest/pgbackrest.conf).
    pgbackrest_stanza: str = Field(default="conveyor", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    pgbackrest_config: str | None = None
    # The OS user pgbackrest runs as: the data directory's owner (unset: the current user;
    # switching to another user needs root).
    pgbackrest_user: str | None = None
    pgbackrest_bin: str = "pgbackrest"
    # Where pg_waldump is (reads the newest archived commit); unset: /usr/lib/postgresql/<version>/bin.
    pg_bindir: str | None = None
    # -- end of the backup settings ------------------------------------------------------------

    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts or not all(p.isdigit() for p in parts):
                raise ValueError("expected comma-separated whole seconds, e.g. 1,5,30")
            return tuple(int(p) for p in parts)
        return value

    @field_validator("retry_delays")
    @classmethod
    def _delays_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("needs at least one delay, each > 0 seconds")
        return value

    @field_validator("reservation_ttl", "reconcile_interval", "maintenance_interval", "inbox_retention",
                     "transitions_retention", "ledger_retention", "dlq_audit_retention", "pii_retention",
                     mode="before")
    @classmethod
    def _parse_duration(cls, value: object) -> object:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", value)
            if not match:
                raise ValueError('expected a duration such as "900", "30s", "15m", "1h" or "7d"')
            return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400}[match[2] or "s"]
        return value

    @field_validator("pii_key_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("tenant_rate_limits")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        from conveyor.workers.runtime.throttle import parse_limits

        parse_limits(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("amqp_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("amqp_urls")
    @classmethod
    def _urls_scheme(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("amqp://", "amqps://")):
                raise ValueError(f"each URL must start with amqp:// or amqps:// (got {redact(url)!r})")
        if len(set(value)) != len(value):
            raise ValueError("a URL is listed twice")
        return value

    @model_validator(mode="after")
    def _first_broker_is_the_url(self) -> "Settings":
        # The tools that take one URL (publish, the topology policy, queue depths) use the first.
        if self.amqp_urls and self.amqp_url != self.amqp_urls[0]:
            object.__setattr__(self, "amqp_url", self.amqp_urls[0])
        return self

    @field_validator("quorum_replicas", "http_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "listen_database_url", "database_read_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value


def broker_urls(settings: Settings) -> list[str]:
    """The brokers to try, in the configured order: CONVEYOR_AMQP_URLS, else CONVEYOR_AMQP_URL."""
    return list(settings.amqp_urls) or [settings.amqp_url]


def redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ``ConfigError`` with one line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # validated by pydantic, reported below
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: ErrorDetails) -> str:
    name = "CONVEYOR_" + str(error["loc"][0]).upper() if error["loc"] else "settings"
    return f"invalid setting {name}: {error['msg']}"
