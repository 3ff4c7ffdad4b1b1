"""Several brokers (CONVEYOR_AMQP_URLS): parsing and precedence, the order they are tried in,
an unreachable one skipped with one warning, none reachable an error listing them all (the
CLI's exit 3). Unreachable brokers are closed loopback ports: refused at once, no server needed."""

from __future__ import annotations

import socket

import pika
import pytest

from conveyor.workers.cli import EXIT_UNAVAILABLE, EXIT_USAGE, main
from conveyor.workers.config import ConfigError, Settings, broker_urls, load_settings
from conveyor.workers.runtime import amqp

_HANDED_OUT: set[int] = set()


def closed_port() -> int:
    """A loopback port nothing listens on (a different one each call)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def url(port: int, password: str = "secret") -> str:
    return f"amqp://conveyor:{password}@127.0.0.1:{port}/%2F"


def test_amqp_urls_are_split_and_take_precedence_over_amqp_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_AMQP_URL", "amqp://guest:guest@single:5672/%2F")
    monkeypatch.setenv("CONVEYOR_AMQP_URLS", " amqp://u:p@a:5672/v , amqp://u:p@b:5673/v,amqps://u:p@c/v, ")

    settings = load_settings()

    assert settings.amqp_urls == ("amqp://u:p@a:5672/v", "amqp://u:p@b:5673/v", "amqps://u:p@c/v")
    assert broker_urls(settings) == list(settings.amqp_urls)
    assert settings.amqp_url == "amqp://u:p@a:5672/v"   # the one-URL tools use the first


def test_without_amqp_urls_the_one_url_is_the_list() -> None:
    settings = Settings(amqp_url="amqp://guest:guest@one:5672/%2F")
    assert settings.amqp_urls == () and broker_urls(settings) == ["amqp://guest:guest@one:5672/%2F"]


@pytest.mark.parametrize(("value", "says"), [
    ("amqp://u:p@a/v,http://u:hidden@b/v", "must start with amqp:// or amqps://"),
    ("amqp://u:p@a/v,amqp://u:p@a/v", "listed twice"),
])
def test_a_bad_list_names_the_setting_without_the_password(monkeypatch: pytest.MonkeyPatch, value: str,
                                                           says: str) -> None:
    monkeypatch.setenv("CONVEYOR_AMQP_URLS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "CONVEYOR_AMQP_URLS" in str(caught.value) and says in str(caught.value)
    assert "hidden" not in str(caught.value)


@pytest.mark.parametrize(("value", "replicas"), [("3", 3), ("", None), ("1", 1)])
def test_quorum_replicas(monkeypatch: pytest.MonkeyPatch, value: str, replicas: int | None) -> None:
    monkeypatch.setenv("CONVEYOR_QUORUM_REPLICAS", value)
    assert load_settings().quorum_replicas == replicas


@pytest.mark.parametrize("value", ["0", "-1", "three"])
def test_a_bad_replica_count_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CONVEYOR_QUORUM_REPLICAS", value)
    with pytest.raises(ConfigError, match="CONVEYOR_QUORUM_REPLICAS"):
        load_settings()


def test_the_order_starts_at_the_process_s_node_and_wraps_round() -> None:
    urls = ["a", "b", "c"]
    assert [amqp.connection_order(urls, start) for start in (0, 1, 2, 5)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["c", "a", "b"]]


class RecordedLog:
    """Stands in for the module's logger (capture_logs() misses a logger cached earlier)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.events.append({"event": event, "log_level": level, **fields})


class FakeConnection:
    def __init__(self, params: pika.URLParameters) -> None:
        self.port = params.port


def test_an_unreachable_broker_is_skipped_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three brokers of which the first two refuse connections
    down_1, down_2, up = closed_port(), closed_port(), 5999
    real = pika.BlockingConnection

    def connect(params):
        return FakeConnection(params) if params.port == up else real(params)

    monkeypatch.setattr(amqp.pika, "BlockingConnection", connect)
    monkeypatch.setattr(amqp, "_START", 0)
    monkeypatch.setattr(amqp, "_warned", set())
    recorded = RecordedLog()
    monkeypatch.setattr(amqp, "log", recorded)
    settings = Settings(amqp_urls=(url(down_1), url(down_2), url(up)))

    # When a connection is asked for twice
    first = amqp.connect(settings, name="test")
    second = amqp.connect(settings, name="test")

    # Then both reach the broker that answers, and each dead one is warned about once
    assert first.port == second.port == up
    warnings = [entry for entry in recorded.events if entry["event"] == "broker_unreachable"]
    assert all(w["log_level"] == "warning" for w in warnings)
    assert [w["broker"] for w in warnings] == [url(down_1, "***"), url(down_2, "***")]
    assert all("secret" not in str(w) for w in warnings)


def test_no_broker_answering_raises_one_error_listing_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = [closed_port(), closed_port()]
    settings = Settings(amqp_urls=tuple(url(p) for p in ports))

    with pytest.raises(amqp.BrokersUnreachable) as caught:
        amqp.connect(settings, name="test")

    text = str(caught.value)
    assert all(f"127.0.0.1:{p}" in text for p in ports) and "secret" not in text
    assert isinstance(caught.value, pika.exceptions.AMQPConnectionError)  # a reconnect, for the loops


def test_the_cli_exits_3_naming_every_broker(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ports = [closed_port(), closed_port(), closed_port()]
    monkeypatch.setenv("CONVEYOR_AMQP_URLS", ",".join(url(p) for p in ports))

    code = main(["topology", "declare"])

    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE == 3, err
    [line] = [line for line in err.splitlines() if line.startswith("conveyor: ")]
    assert "BrokersUnreachable" in line and all(f":{p}/" in line for p in ports) and "secret" not in err
    assert line.count("ConnectionRefusedError") == 3
    # one warning per broker, and none of pika's own error records about the attempts
    assert sum("broker_unreachable" in other for other in err.splitlines()) == 3
    assert "pika.adapters" not in err


def test_a_bad_list_on_the_command_line_is_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONVEYOR_AMQP_URLS", "amqp://a/v,nonsense")
    assert main(["topology", "declare"]) == EXIT_USAGE
    assert "CONVEYOR_AMQP_URLS" in capsys.readouterr().err
