"""Settings from CONVEYOR_* variables: defaults, parsing, and one clear line per bad value."""

from __future__ import annotations

import pydantic
import pytest

from conveyor.workers.cli import EXIT_USAGE, main
from conveyor.workers.config import ConfigError, Settings, load_settings


def test_defaults_load_without_any_environment() -> None:
    # Given no CONVEYOR_* variable (the conftest clears them)
    # When settings load
    settings = load_settings()

    # Then the documented defaults apply
    assert settings.database_url.startswith("postgresql://")
    assert settings.amqp_url.startswith("amqp://")
    assert settings.prefetch == 100
    assert settings.retry_delays == (1, 5, 30)
    assert settings.max_attempts == 5
    assert settings.default_tenant == "default"
    assert settings.log_format == "auto"
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("value", "delays"),
    [("2,4,8", (2, 4, 8)), (" 2, 4 ,8 ", (2, 4, 8)), ("10", (10,)), ("1,5,30,", (1, 5, 30))],
)
def test_retry_delays_parse_from_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch, value: str,
                                                       delays: tuple[int, ...]) -> None:
    # Given CONVEYOR_RETRY_DELAYS as an operator would write it
    monkeypatch.setenv("CONVEYOR_RETRY_DELAYS", value)

    # When settings load
    settings = load_settings()

    # Then the tiers are whole seconds, in the given order
    assert settings.retry_delays == delays


def test_environment_values_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PREFETCH", "7")
    monkeypatch.setenv("CONVEYOR_AMQP_URL", "amqps://u:p@broker:5671/%2F")
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "json")
    monkeypatch.setenv("CONVEYOR_RELAY_BATCH_SIZE", "1000")
    settings = load_settings()
    assert (settings.prefetch, settings.amqp_url, settings.log_format, settings.relay_batch_size) == (
        7, "amqps://u:p@broker:5671/%2F", "json", 1000)


BAD_VALUES = [
    pytest.param("CONVEYOR_PREFETCH", "0", id="prefetch-zero"),
    pytest.param("CONVEYOR_PREFETCH", "many", id="prefetch-not-a-number"),
    pytest.param("CONVEYOR_RETRY_DELAYS", "1,x", id="retry-delays-not-numbers"),
    pytest.param("CONVEYOR_RETRY_DELAYS", "1,-5", id="retry-delays-negative"),
    pytest.param("CONVEYOR_RETRY_DELAYS", "0,5", id="retry-delays-zero"),
    pytest.param("CONVEYOR_RETRY_DELAYS", ",", id="retry-delays-empty"),
    pytest.param("CONVEYOR_AMQP_URL", "http://x", id="amqp-url-http"),
    pytest.param("CONVEYOR_DATABASE_URL", "mysql://x", id="database-url-mysql"),
    pytest.param("CONVEYOR_LOG_FORMAT", "xml", id="log-format-xml"),
    pytest.param("CONVEYOR_LOG_LEVEL", "LOUD", id="log-level-unknown"),
    pytest.param("CONVEYOR_MAX_ATTEMPTS", "0", id="max-attempts-zero"),
    pytest.param("CONVEYOR_MAX_MESSAGE_BYTES", "10", id="max-message-bytes-too-small"),
    pytest.param("CONVEYOR_RELAY_BATCH_SIZE", "0", id="relay-batch-size-zero"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_a_bad_value_raises_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                            variable: str, value: str) -> None:
    # Given one invalid CONVEYOR_* variable
    monkeypatch.setenv(variable, value)

    # When settings load
    with pytest.raises(ConfigError) as caught:
        load_settings()

    # Then the error is one line naming that variable
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_every_bad_variable_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PREFETCH", "0")
    monkeypatch.setenv("CONVEYOR_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "CONVEYOR_PREFETCH" in message and "CONVEYOR_LOG_FORMAT" in message
    assert "\n" not in message


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(pydantic.ValidationError):
        settings.prefetch = 5  # type: ignore[misc]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_cli_exits_2_with_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      variable: str, value: str) -> None:
    # Given one invalid CONVEYOR_* variable
    monkeypatch.setenv(variable, value)

    # When any command runs
    code = main(["db", "status"])

    # Then it exits with the usage/configuration code before touching anything,
    # printing one line on stderr that names the setting
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("conveyor: ")
    assert variable in lines[0]
